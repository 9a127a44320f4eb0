//! `TaskLog` on SQLite: one row per event, the primary key (task, seq) makes
//! appends conditional.

use async_trait::async_trait;
use rusqlite::params;
use taskgate_domain::ports::{Page, StoreError, StoreResult, TaskLog};
use taskgate_domain::task::{EventData, TaskCreated, TaskEvent, TaskId};
use taskgate_domain::user::UserId;

use crate::{EmbeddedStore, corrupt, insert_new, sql};

impl EmbeddedStore {
    /// Runs `f`, a write of `task`'s log, and drops the task's cached log
    /// once the write is committed (or failed): a read that raced with it
    /// is not kept.
    async fn write_log<F>(&self, task: &TaskId, f: F) -> StoreResult<()>
    where
        F: FnOnce(&mut rusqlite::Connection) -> StoreResult<()> + Send + 'static,
    {
        let (tasks, task) = (self.tasks.clone(), *task);
        self.with_conn_then(f, move || tasks.forget(&task)).await
    }
}

fn from_json(item: &str) -> StoreResult<TaskEvent> {
    serde_json::from_str(item).map_err(|e| corrupt("task event", e))
}

/// The `active_tasks` key counting an owner's unfinished exports.
fn exports_key(owner_id: &str) -> String {
    format!("exports:{owner_id}")
}

#[async_trait]
impl TaskLog for EmbeddedStore {
    async fn record_progress(&self, task: &TaskId, progress: f64) -> StoreResult<()> {
        let task_id = task.to_string();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO task_progress (task_id, progress) VALUES (?1, ?2)
                 ON CONFLICT (task_id) DO UPDATE SET progress = excluded.progress",
                params![task_id, progress],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn task_progress(&self, task: &TaskId) -> StoreResult<Option<f64>> {
        let task_id = task.to_string();
        self.with_reader(move |conn| {
            use rusqlite::OptionalExtension as _;
            conn.query_row(
                "SELECT progress FROM task_progress WHERE task_id = ?1",
                [task_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql)
        })
        .await
    }

    async fn append_event(&self, event: &TaskEvent) -> StoreResult<()> {
        let owner_id = match &event.change {
            EventData::Created(TaskCreated { owner_id, .. }) => Some(owner_id.to_string()),
            _ => None,
        };
        let item = serde_json::to_string(event).expect("an event always serialises");
        let (task_id, seq) = (event.stream.to_string(), event.seq as i64);
        self.write_log(&event.stream, move |conn| {
            insert_new(
                conn,
                "INSERT INTO task_events (task_id, seq, owner_id, item) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (task_id, seq) DO NOTHING",
                params![task_id, seq, owner_id, item],
            )
        })
        .await
    }

    async fn append_created(
        &self,
        event: &TaskEvent,
        max_active: u64,
        max_exports: Option<u64>,
    ) -> StoreResult<()> {
        let EventData::Created(TaskCreated { owner_id, .. }) = &event.change else {
            return Err(StoreError::other("append_created takes a created event"));
        };
        let owner_id = owner_id.to_string();
        // Unfinished exports are counted beside the tasks, under a key of
        // their own in the same table.
        let exports_key = exports_key(&owner_id);
        let item = serde_json::to_string(event).expect("an event always serialises");
        let (task_id, seq) = (event.stream.to_string(), event.seq as i64);
        self.write_log(&event.stream, move |conn| {
            let active: i64 = conn
                .query_row(
                    "SELECT coalesce((SELECT active FROM active_tasks WHERE owner_id = ?1), 0)",
                    [&owner_id],
                    |row| row.get(0),
                )
                .map_err(sql)?;
            if u64::try_from(active).unwrap_or(0) >= max_active {
                return Err(StoreError::OverQuota);
            }
            if let Some(max_exports) = max_exports {
                let exports: i64 = conn
                    .query_row(
                        "SELECT coalesce((SELECT active FROM active_tasks WHERE owner_id = ?1), 0)",
                        [&exports_key],
                        |row| row.get(0),
                    )
                    .map_err(sql)?;
                if u64::try_from(exports).unwrap_or(0) >= max_exports {
                    return Err(StoreError::TooManyExports);
                }
            }
            insert_new(
                conn,
                "INSERT INTO task_events (task_id, seq, owner_id, item) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (task_id, seq) DO NOTHING",
                params![task_id, seq, owner_id, item],
            )?;
            conn.execute(
                "INSERT INTO active_tasks (owner_id, active) VALUES (?1, 1)
                 ON CONFLICT (owner_id) DO UPDATE SET active = active + 1",
                [&owner_id],
            )
            .map_err(sql)?;
            if max_exports.is_some() {
                conn.execute(
                    "INSERT INTO active_tasks (owner_id, active) VALUES (?1, 1)
                     ON CONFLICT (owner_id) DO UPDATE SET active = active + 1",
                    [&exports_key],
                )
                .map_err(sql)?;
            }
            Ok(())
        })
        .await
    }

    async fn append_ending(
        &self,
        event: &TaskEvent,
        owner: &UserId,
        export: bool,
    ) -> StoreResult<()> {
        let owner = owner.to_string();
        let exports_key = exports_key(&owner);
        let item = serde_json::to_string(event).expect("an event always serialises");
        let (task_id, seq) = (event.stream.to_string(), event.seq as i64);
        self.write_log(&event.stream, move |conn| {
            insert_new(
                conn,
                "INSERT INTO task_events (task_id, seq, owner_id, item) VALUES (?1, ?2, NULL, ?3)
                 ON CONFLICT (task_id, seq) DO NOTHING",
                params![task_id, seq, item],
            )?;
            conn.execute(
                "UPDATE active_tasks SET active = max(active - 1, 0) WHERE owner_id = ?1",
                [&owner],
            )
            .map_err(sql)?;
            if export {
                conn.execute(
                    "UPDATE active_tasks SET active = max(active - 1, 0) WHERE owner_id = ?1",
                    [&exports_key],
                )
                .map_err(sql)?;
            }
            Ok(())
        })
        .await
    }

    async fn active_tasks(&self, owner: &UserId) -> StoreResult<u64> {
        let owner = owner.to_string();
        self.with_reader(move |conn| {
            conn.query_row(
                "SELECT coalesce((SELECT active FROM active_tasks WHERE owner_id = ?1), 0)",
                [owner],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(sql)
        })
        .await
    }

    async fn task_events(&self, task: &TaskId) -> StoreResult<Vec<TaskEvent>> {
        let id = *task;
        if let Some(events) = self.tasks.get(&id) {
            return Ok(events);
        }
        let generation = self.tasks.generation();
        let task = task.to_string();
        let events: Vec<TaskEvent> = self
            .with_reader(move |conn| {
                let mut statement = conn
                    .prepare_cached("SELECT item FROM task_events WHERE task_id = ?1 ORDER BY seq")
                    .map_err(sql)?;
                let rows = statement
                    .query_map([task], |row| row.get::<_, String>(0))
                    .map_err(sql)?;
                rows.map(|row| from_json(&row.map_err(sql)?)).collect()
            })
            .await?;
        if !events.is_empty() {
            self.tasks.keep(generation, id, &events);
        }
        Ok(events)
    }

    async fn owner_tasks(
        &self,
        owner: &UserId,
        after: Option<&TaskId>,
        limit: usize,
    ) -> StoreResult<Page<TaskId, TaskId>> {
        let owner = owner.to_string();
        // Task ids are UUIDv7: descending text order is newest first.
        let after = after.map(ToString::to_string);
        self.with_reader(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT task_id FROM task_events
                     WHERE owner_id = ?1 AND (?2 IS NULL OR task_id < ?2)
                     ORDER BY task_id DESC LIMIT ?3",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map(params![owner, after, limit as i64 + 1], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(sql)?;
            let mut items = Vec::with_capacity(limit + 1);
            for row in rows {
                let id = row.map_err(sql)?;
                items.push(TaskId::parse(&id).map_err(|e| corrupt("task id", e))?);
            }
            Ok(Page::from_extra(items, limit, |id| *id))
        })
        .await
    }

    async fn scan_events(
        &self,
        after: Option<&(TaskId, u64)>,
        limit: usize,
    ) -> StoreResult<Page<TaskEvent, (TaskId, u64)>> {
        let (after_task, after_seq) = match after {
            Some((task, seq)) => (task.to_string(), *seq as i64),
            None => (String::new(), 0),
        };
        self.with_conn(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT item FROM task_events WHERE (task_id, seq) > (?1, ?2)
                     ORDER BY task_id, seq LIMIT ?3",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map(params![after_task, after_seq, limit as i64 + 1], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(sql)?;
            let mut items = Vec::with_capacity(limit + 1);
            for row in rows {
                items.push(from_json(&row.map_err(sql)?)?);
            }
            Ok(Page::from_extra(items, limit, |e| (e.stream, e.seq)))
        })
        .await
    }
}

/// The logs of tasks read lately: `GET /tasks/{id}` and every change to a
/// task read one. Every append through this store drops its task's entry
/// once committed and bumps a generation, so a read that raced with it is
/// not kept. Only this store's server appends to its database's task logs
/// (`taskgate audit` reads), so nothing else can make an entry stale.
#[derive(Default)]
pub(crate) struct TaskCache {
    entries: std::sync::Mutex<std::collections::HashMap<TaskId, Vec<TaskEvent>>>,
    generation: std::sync::atomic::AtomicU64,
}

/// Most task logs kept; past it the cache starts over.
const MAX_CACHED_TASKS: usize = 10_000;

impl TaskCache {
    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<TaskId, Vec<TaskEvent>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, task: &TaskId) -> Option<Vec<TaskEvent>> {
        self.entries().get(task).cloned()
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn keep(&self, generation: u64, task: TaskId, events: &[TaskEvent]) {
        let mut entries = self.entries();
        if self.generation() != generation {
            return;
        }
        if entries.len() >= MAX_CACHED_TASKS {
            entries.clear();
        }
        entries.insert(task, events.to_vec());
    }

    fn forget(&self, task: &TaskId) {
        let mut entries = self.entries();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        entries.remove(task);
    }
}
