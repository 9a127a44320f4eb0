//! # Embedded adapters
//!
//! The adapters that need no server:
//! - [`EmbeddedStore`]: every storage port of `taskgate-domain` on one SQLite
//!   database, either a file in the data directory (the default for
//!   `taskgate serve`) or in memory (tests, throwaway runs);
//! - [`engine::LocalEngine`]: the in-process workflow engine that runs tasks
//!   the way the Step Functions state machine does, and resumes them after a
//!   restart.
//!
//! SQLite was chosen over a pure-Rust key-value store because several
//! processes may open the same file at once (a running server and `taskgate
//! audit`), and because the file can be inspected with the `sqlite3` shell.
//! See docs/adr/0002-embedded-store.md.
//!
//! Each port call runs on tokio's blocking pool and holds the connection for
//! one transaction; writes that must check something first (version, admin
//! count) run in an `IMMEDIATE` transaction, so they are serialised against
//! every other writer of the file, in this process or another.
#![forbid(unsafe_code)]

pub mod backup;
pub mod blobs;
pub mod engine;
mod files;
mod idempotency;
pub mod projects;
mod schema;

/// The SQLite schema version (`PRAGMA user_version`) this build upgrades to.
pub const SCHEMA_VERSION: usize = schema::VERSION;
mod security;
mod tasks;
mod tokens;
mod users;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use taskgate_domain::ports::{StoreError, StoreResult};

/// The embedded store. Cheap to clone; clones share one writing connection
/// and, for a database file, a few read-only ones.
#[derive(Clone)]
pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections to the same file (WAL lets them read while the
    /// writer writes), so reads are not serialised behind writes or each
    /// other. `None` in memory, where every call uses `conn`.
    readers: Option<Arc<Readers>>,
    writes: Arc<Writes>,
    sessions: Arc<tokens::SessionCache>,
    tasks: Arc<tasks::TaskCache>,
    projects: Arc<projects::ProjectCache>,
    /// Rows an item listing walks for one page when its filter matches
    /// little (see `ProjectStore::list_items`).
    read_budget: usize,
}

/// The default of [`EmbeddedStore::with_read_budget`]: a page walks at most
/// about this many rows (a few milliseconds), however rare its matches.
pub const READ_BUDGET: usize = 2_000;

/// A pool of read-only connections: a permit per idle connection.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(|e| {
            StoreError::other(format!("cannot open database {}: {e}", path.display()))
        })?;
        // WAL lets readers in other processes (taskgate audit) work while the
        // server writes; FULL sync keeps a committed write across a crash.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        let mut store = Self::init(conn)?;
        // Opened after `init` migrated the schema.
        let count = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count {
            let reader = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sql)?;
            reader.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
            reader.set_prepared_statement_cache_capacity(64);
            idle.push(reader);
        }
        store.readers = Some(Arc::new(Readers {
            idle: Mutex::new(idle),
            permits: Arc::new(tokio::sync::Semaphore::new(count)),
        }));
        Ok(store)
    }

    /// The same store with another read budget for item listings (tests use
    /// a small one to see pages end early).
    pub fn with_read_budget(mut self, rows: usize) -> Self {
        self.read_budget = rows.max(1);
        self
    }

    /// A fresh database that lives as long as this value (and its clones).
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory().map_err(sql)?)
    }

    fn init(mut conn: Connection) -> StoreResult<Self> {
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut conn)?;
        // The query planner picks an item listing's index by how selective
        // each filter is, which it knows only from `ANALYZE`'s statistics
        // (without them, `due=today` walked a whole project in creation
        // order: 26 ms at 100,000 items, 0.1 ms with them). Bounded
        // analysis now, and again as tables grow (`Writes::run_batches`).
        conn.execute_batch("PRAGMA analysis_limit = 1000")
            .and_then(|()| conn.execute_batch(OPTIMIZE))
            .map_err(sql)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            readers: None,
            writes: Arc::default(),
            sessions: Arc::default(),
            tasks: Arc::default(),
            projects: Arc::default(),
            read_budget: READ_BUDGET,
        })
    }

    /// Runs `f`, which only reads, on a read-only connection (the writing
    /// one in memory) on the blocking pool.
    async fn with_reader<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.with_conn(f).await;
        };
        let readers = Arc::clone(readers);
        let permit = Arc::clone(&readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::other("the store's readers are closed"))?;
        tokio::task::spawn_blocking(move || {
            // The permit guarantees an idle connection.
            let mut conn = readers
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .expect("a permit means an idle reader");
            // A panic must not lose the connection: the pool would then
            // hold fewer connections than permits.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut conn)))
                .unwrap_or_else(|_| {
                    // Whatever the call left installed goes with it.
                    let _ = conn.progress_handler(0, None::<fn() -> bool>);
                    Err(StoreError::other("a store read panicked"))
                });
            readers
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            drop(permit);
            result
        })
        .await
        .map_err(|e| StoreError::other(format!("store task failed: {e}")))?
    }

    /// Runs `f` on the writing connection, in a batch with whatever other
    /// calls are waiting (group commit): one transaction, one fsync, for
    /// all of them. Each call runs inside a savepoint of its own, so one
    /// that fails changes nothing and leaves the others alone; every call
    /// gets its answer only once the batch is committed (durable), or the
    /// commit's error. The first caller to find no batch running runs
    /// batches, on the blocking pool, until none is waiting.
    async fn with_conn<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        self.with_conn_then(f, || {}).await
    }

    /// [`Self::with_conn`], then `after` once the batch has ended (committed
    /// or not) and before the caller is answered, whether or not the caller
    /// still waits: what a cache must forget of a write. Forgetting inside
    /// `f` would be too early (a read before the commit would keep the old
    /// state again), and after the call returns too late (a caller that
    /// gave up, such as a request whose client went away, never gets there).
    async fn with_conn_then<T, F>(
        &self,
        f: F,
        after: impl FnOnce() + Send + 'static,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lead = {
            let mut queue = self.writes.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(Box::new(Pending {
                work: Some(f),
                result: None,
                after: Some(Box::new(after)),
                reply: Some(reply),
            }));
            let mut leading = self
                .writes
                .leading
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            !std::mem::replace(&mut *leading, true)
        };
        if lead {
            let (conn, writes) = (Arc::clone(&self.conn), Arc::clone(&self.writes));
            tokio::task::spawn_blocking(move || writes.run_batches(&conn));
        }
        answer
            .await
            .map_err(|_| StoreError::other("a store call was dropped unanswered"))?
    }
}

/// Calls waiting for the writing connection, and whether a batch runs.
#[derive(Default)]
struct Writes {
    queue: Mutex<Vec<Box<dyn Job>>>,
    /// Locked after `queue` only.
    leading: Mutex<bool>,
    /// Calls run since the planner's statistics were last brought up to
    /// date (only the batch leader touches it).
    since_optimize: std::sync::atomic::AtomicUsize,
}

/// Calls between two `PRAGMA optimize` runs: it re-analyses only tables
/// whose size changed a lot since their last analysis (each bounded by
/// `analysis_limit`), so most runs do nothing.
const OPTIMIZE_EVERY: usize = 5_000;

/// Brings the planner's statistics up to date where tables have grown
/// (`0x10002`: analyse tables never analysed too, as at open).
const OPTIMIZE: &str = "PRAGMA optimize = 0x10002";

/// Most calls in one batch (one transaction).
const MAX_BATCH: usize = 256;

trait Job: Send {
    /// Runs the call; whether it succeeded (its changes are to be kept).
    fn run(&mut self, conn: &mut Connection) -> bool;
    /// Answers the caller: its result, or the batch's commit error.
    fn answer(self: Box<Self>, committed: Result<(), &str>);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<StoreResult<T>>,
    after: Option<Box<dyn FnOnce() + Send>>,
    reply: Option<tokio::sync::oneshot::Sender<StoreResult<T>>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
{
    fn run(&mut self, conn: &mut Connection) -> bool {
        let work = self.work.take().expect("a job runs once");
        // A panic in one call must not take the batch (and the others'
        // answers) with it.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(StoreError::other("a store call panicked")));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(mut self: Box<Self>, committed: Result<(), &str>) {
        let result = match (self.result.take(), committed) {
            (Some(Ok(_)), Err(e)) => Err(StoreError::unavailable(format!(
                "the write was not committed: {e}"
            ))),
            (Some(result), _) => result,
            (None, Err(e)) => Err(StoreError::unavailable(format!(
                "the write could not start: {e}"
            ))),
            (None, Ok(())) => Err(StoreError::other("a store call did not run")),
        };
        if let Some(after) = self.after.take() {
            after();
        }
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

impl Writes {
    /// Runs batches until no call is waiting (then lets the next caller lead).
    fn run_batches(&self, conn: &Mutex<Connection>) {
        loop {
            let batch: Vec<Box<dyn Job>> = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if queue.is_empty() {
                    *self.leading.lock().unwrap_or_else(|p| p.into_inner()) = false;
                    return;
                }
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect()
            };
            // A panic while holding the lock cannot leave a half-applied
            // transaction behind (SQLite rolls it back), so a poisoned lock
            // is safe to reuse.
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let calls = batch.len();
            Self::run_batch(&mut conn, batch);
            let since = self
                .since_optimize
                .fetch_add(calls, std::sync::atomic::Ordering::Relaxed)
                + calls;
            if since >= OPTIMIZE_EVERY {
                self.since_optimize
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                if let Err(e) = conn.execute_batch(OPTIMIZE) {
                    tracing::warn!(error = %e, "could not update the query planner's statistics");
                }
            }
        }
    }

    fn run_batch(conn: &mut Connection, mut batch: Vec<Box<dyn Job>>) {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let message = e.to_string();
            for job in batch {
                job.answer(Err(&message));
            }
            return;
        }
        for job in &mut batch {
            let _ = conn.execute_batch("SAVEPOINT call");
            let keep = job.run(conn);
            if !keep {
                let _ = conn.execute_batch("ROLLBACK TO call");
            }
            let _ = conn.execute_batch("RELEASE call");
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                for job in batch {
                    job.answer(Ok(()));
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                let message = e.to_string();
                for job in batch {
                    job.answer(Err(&message));
                }
            }
        }
    }
}

/// Maps SQLite errors: a busy database (another process holds the write
/// lock past the timeout) is `Unavailable`; anything else is `Other`.
pub(crate) fn sql(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::unavailable(e)
        }
        _ => StoreError::other(e),
    }
}

/// Runs an `INSERT … ON CONFLICT … DO NOTHING`: `AlreadyExists` when the
/// key was taken, and then nothing is written.
pub(crate) fn insert_new(
    conn: &Connection,
    statement: &str,
    params: impl rusqlite::Params,
) -> StoreResult<()> {
    match conn.execute(statement, params).map_err(sql)? {
        0 => Err(StoreError::AlreadyExists),
        _ => Ok(()),
    }
}

/// A stored item that no longer parses is corruption, not a client error.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::other(format!("stored {what} does not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that panics gives its connection back: the pool keeps as
    /// many connections as permits, and later reads still run.
    #[tokio::test]
    async fn a_panicking_read_does_not_shrink_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("db.sqlite")).unwrap();
        for _ in 0..8 {
            let failed = store
                .with_reader(|_| -> StoreResult<()> { panic!("a bug in a read") })
                .await;
            assert!(failed.is_err());
        }
        for _ in 0..8 {
            let one: i64 = store
                .with_reader(|conn| conn.query_row("SELECT 1", [], |r| r.get(0)).map_err(sql))
                .await
                .unwrap();
            assert_eq!(one, 1);
        }
    }

    /// The write paths rely on this instead of savepoints of their own: a
    /// call that fails after writing leaves nothing of it, whether it runs
    /// alone or in a batch with calls that succeed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_call_that_fails_after_writing_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            std::sync::Arc::new(EmbeddedStore::open(&dir.path().join("db.sqlite")).unwrap());
        store
            .with_conn(|conn| {
                conn.execute_batch("CREATE TABLE scratch (n INTEGER)")
                    .map_err(sql)
            })
            .await
            .unwrap();
        let calls: Vec<_> = (0..100_i64)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .with_conn(move |conn| {
                            conn.execute("INSERT INTO scratch (n) VALUES (?1)", [n])
                                .map_err(sql)?;
                            conn.execute("INSERT INTO scratch (n) VALUES (?1)", [n + 1000])
                                .map_err(sql)?;
                            match n % 2 {
                                0 => Ok(()),
                                _ => Err(StoreError::Conflict),
                            }
                        })
                        .await
                })
            })
            .collect();
        for (n, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap().is_ok(), n % 2 == 0, "call {n}");
        }
        let kept: Vec<i64> = store
            .with_reader(|conn| {
                let mut rows = conn
                    .prepare("SELECT n FROM scratch ORDER BY n")
                    .map_err(sql)?;
                let kept = rows.query_map([], |r| r.get(0)).map_err(sql)?;
                kept.collect::<Result<_, _>>().map_err(sql)
            })
            .await
            .unwrap();
        let succeeded = (0..100).step_by(2);
        let expected: Vec<i64> = succeeded
            .clone()
            .chain(succeeded.map(|n| n + 1000))
            .collect();
        assert_eq!(kept, expected);
    }
}
