//! `ProjectStore` on SQLite. Each change appends to a log table (its primary
//! key (id, seq) makes the append conditional) and replaces the row it
//! produces, in one `IMMEDIATE` transaction. Listings are keyset-paginated
//! queries that the `items_by_*` indexes serve (see the query-plan test).

use async_trait::async_trait;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params};
use taskgate_domain::ports::{
    FeedChange, FeedEntry, ItemQuery, ItemScope, Page, ProjectLogs, ProjectStore, StoreError,
    StoreResult,
};
use taskgate_domain::project::listing::{Assignee, Due, Position, SortKey, Value};
use taskgate_domain::project::log::{Item, ItemEntry, Project, ProjectEntry};
use taskgate_domain::project::{ItemId, ItemStatus, ProjectId};
use taskgate_domain::user::{UserId, Username};

use crate::{EmbeddedStore, corrupt, sql};

/// A count or position as SQLite's integer, saturating: a client's
/// `after` of 2^63 or more means "after everything", never a negative
/// number that would match from the start again.
fn sql_int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

fn status_rank(status: ItemStatus) -> i64 {
    ItemStatus::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in ALL") as i64
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("rows and entries always serialise")
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

/// Appends a log entry (`Conflict` if its seq is taken), runs `write` for
/// the row and gives the entry the next position of `project`'s feed.
/// Returns that position. Runs inside the write's own savepoint
/// (`with_conn`), so a failure part way leaves nothing behind.
fn append(
    conn: &Connection,
    log_insert: &str,
    log_params: impl rusqlite::Params,
    feed: (&str, Option<&str>, i64),
    write: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>,
) -> StoreResult<u64> {
    if conn.execute(log_insert, log_params).map_err(sql)? == 0 {
        return Err(StoreError::Conflict);
    }
    write(conn).map_err(sql)?;
    let (project, item, seq) = feed;
    let position: i64 = conn
        .query_row(
            "INSERT INTO project_feed (project_id, position, item_id, seq)
             SELECT ?1, coalesce(max(position), 0) + 1, ?2, ?3
               FROM project_feed WHERE project_id = ?1
             RETURNING position",
            params![project, item, seq],
            |row| row.get(0),
        )
        .map_err(sql)?;
    Ok(position as u64)
}

/// Virtual machine instructions between two calls of the progress handler
/// ([`bounded`]): about what one row of a listing's walk takes.
const OPS_PER_CHECK: i32 = 25;

/// [`rows`], unless SQLite has done about `budget` rows' worth of work
/// before it is done (then `None`).
fn bounded<T: serde::de::DeserializeOwned>(
    conn: &mut Connection,
    budget: usize,
    what: &str,
    statement: &str,
    values: Vec<Sql>,
) -> StoreResult<Option<Vec<T>>> {
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = stopped.clone();
    let mut checks = 0;
    conn.progress_handler(
        OPS_PER_CHECK,
        Some(move || {
            checks += 1;
            let over = checks > budget;
            if over {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            over
        }),
    )
    .map_err(sql)?;
    let result = rows(conn, what, statement, rusqlite::params_from_iter(values));
    conn.progress_handler(0, None::<fn() -> bool>)
        .map_err(sql)?;
    if stopped.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(None);
    }
    result.map(Some)
}

fn rows<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    what: &str,
    statement: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(statement).map_err(sql)?;
    let texts = statement
        .query_map(params, |row| row.get::<_, String>(0))
        .map_err(sql)?;
    texts
        .map(|text| from_json(what, &text.map_err(sql)?))
        .collect()
}

/// An item listing in parts: which rows it walks (`walk`: the scope and
/// the cursor), what it keeps of them (`filters`), in which order, with
/// the parameters of all three.
struct Listing {
    walk: Vec<String>,
    filters: Vec<String>,
    order: String,
    values: Vec<Sql>,
}

impl Listing {
    /// The listing as one query: `limit` matching rows.
    fn statement(&self, limit: usize) -> (String, Vec<Sql>) {
        let clauses = [&self.walk[..], &self.filters[..]].concat();
        let mut values = self.values.clone();
        values.push((limit as i64).into());
        (
            format!(
                "SELECT row FROM items WHERE {} ORDER BY {} LIMIT ?{}",
                clauses.join(" AND "),
                self.order,
                values.len()
            ),
            values,
        )
    }

    /// The listing within the first `budget` rows of its walk: `limit`
    /// matching rows of those, however rare the matches.
    fn within_budget(&self, budget: usize, limit: usize) -> (String, Vec<Sql>) {
        let mut values = self.values.clone();
        values.push((budget as i64).into());
        let budget_at = values.len();
        values.push((limit as i64).into());
        let mut keep = vec![format!(
            "rowid IN (SELECT rowid FROM items WHERE {} ORDER BY {} LIMIT ?{budget_at})",
            self.walk.join(" AND "),
            self.order
        )];
        keep.extend(self.filters.iter().cloned());
        (
            format!(
                "SELECT row FROM items WHERE {} ORDER BY {} LIMIT ?{}",
                keep.join(" AND "),
                self.order,
                values.len()
            ),
            values,
        )
    }

    /// The last row of the walk's first `budget`, if it has that many.
    fn budget_end(&self, budget: usize) -> (String, Vec<Sql>) {
        let mut values = self.values.clone();
        values.push((budget as i64 - 1).into());
        (
            format!(
                "SELECT row FROM items WHERE {} ORDER BY {} LIMIT 1 OFFSET ?{}",
                self.walk.join(" AND "),
                self.order,
                values.len()
            ),
            values,
        )
    }
}

/// The parts of an item listing ([`Listing`]).
fn item_listing(query: &ItemQuery) -> Listing {
    let mut clauses = vec!["deleted = 0".to_owned()];
    let mut filters = Vec::new();
    let mut values: Vec<Sql> = Vec::new();
    let mut bind = |value: Sql| {
        values.push(value);
        format!("?{}", values.len())
    };
    match &query.scope {
        ItemScope::Project(id) => {
            clauses.push(format!("project_id = {}", bind(id.to_string().into())))
        }
        ItemScope::MemberOf(user) => clauses.push(format!(
            "project_id IN (SELECT project_id FROM project_members WHERE user_id = {})",
            bind(user.to_string().into())
        )),
    }
    if let Some(statuses) = &query.filter.statuses {
        let ranks: Vec<String> = statuses
            .iter()
            .map(|s| bind(status_rank(*s).into()))
            .collect();
        filters.push(format!("status_rank IN ({})", ranks.join(", ")));
    }
    if let Some(due) = query.filter.due {
        let today = bind(query.today.to_string().into());
        filters.push(match due {
            Due::Overdue => format!(
                "due_missing = 0 AND due_key < {today} AND status_rank <> {}",
                status_rank(ItemStatus::Completed)
            ),
            Due::Today => format!("due_missing = 0 AND due_key = {today}"),
            Due::Future => format!("due_missing = 0 AND due_key > {today}"),
        });
    }
    match &query.filter.assignee {
        None => {}
        Some(Assignee::Nobody) => filters.push("assignee IS NULL".into()),
        Some(Assignee::Named(name)) => {
            filters.push(format!("assignee = {}", bind(name.to_string().into())))
        }
    }
    let (dir, cmp) = if query.sort.descending {
        (" DESC", "<")
    } else {
        ("", ">")
    };
    if let Some(after) = &query.after {
        let id = bind(after.id.to_string().into());
        let clause = match after.value {
            Value::CreatedAt(at) => {
                let at = bind(taskgate_domain::timestamp::format(at).into());
                format!("(created_at, item_id) {cmp} ({at}, {id})")
            }
            Value::Status(status) => {
                let rank = bind(status_rank(status).into());
                format!("(status_rank, item_id) {cmp} ({rank}, {id})")
            }
            // Undated items come last in either direction (their `due_key`
            // is empty: naming it lets the index seek to the cursor).
            Value::Due(None) => {
                format!("due_missing = 1 AND due_key = '' AND item_id {cmp} {id}")
            }
            // Ascending, everything after a dated item is one range of
            // `items_by_due`, so a deep page seeks instead of walking from
            // the first row.
            Value::Due(Some(date)) if !query.sort.descending => {
                let date = bind(date.to_string().into());
                format!("(due_missing, due_key, item_id) > (0, {date}, {id})")
            }
            Value::Due(Some(date)) => {
                let date = bind(date.to_string().into());
                format!(
                    "(due_missing = 1 OR (due_missing = 0 AND (due_key, item_id) {cmp} ({date}, {id})))"
                )
            }
        };
        clauses.push(clause);
    }
    // Undated items last in either direction: `due_missing` always ascends.
    let order = match query.sort.key {
        SortKey::DueDate => format!("due_missing, due_key{dir}, item_id{dir}"),
        SortKey::Status => format!("status_rank{dir}, item_id{dir}"),
        SortKey::CreatedAt => format!("created_at{dir}, item_id{dir}"),
    };
    Listing {
        walk: clauses,
        filters,
        order,
        values,
    }
}

#[async_trait]
impl ProjectStore for EmbeddedStore {
    async fn append_project(&self, entry: &ProjectEntry, project: &Project) -> StoreResult<u64> {
        let (id, seq, entry) = (entry.stream.to_string(), entry.seq as i64, to_json(entry));
        let project = project.clone();
        let (projects, changed) = (self.projects.clone(), project.id);
        let write = move |conn: &mut Connection| {
            append(
                conn,
                "INSERT INTO project_log (project_id, seq, entry) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, seq) DO NOTHING",
                params![id, seq, entry],
                (&id, None, seq),
                |tx| {
                    tx.execute(
                        "INSERT INTO projects (project_id, version, owner, deleted, row)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (project_id) DO UPDATE SET version = excluded.version,
                           owner = excluded.owner, deleted = excluded.deleted, row = excluded.row",
                        params![
                            id,
                            project.version as i64,
                            project.owner.as_str(),
                            project.deleted,
                            to_json(&project)
                        ],
                    )?;
                    // Membership rows serve "my projects"; a deleted project
                    // has none, so it is listed nowhere.
                    tx.execute("DELETE FROM project_members WHERE project_id = ?1", [&id])?;
                    if !project.deleted {
                        let mut insert = tx.prepare_cached(
                            "INSERT INTO project_members (project_id, username, user_id)
                             VALUES (?1, ?2, ?3)",
                        )?;
                        for member in project.members.values() {
                            insert.execute(params![
                                id,
                                member.username.as_str(),
                                member.user_id.to_string()
                            ])?;
                        }
                    }
                    Ok(())
                },
            )
        };
        self.with_conn_then(write, move || projects.changed(&changed))
            .await
    }

    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        let version = match self.projects.get(id) {
            Ok(project) => return Ok(Some(project)),
            Err(version) => version,
        };
        let key = id.to_string();
        let project: Option<Project> = self
            .with_reader(move |conn| {
                rows(
                    conn,
                    "project",
                    "SELECT row FROM projects WHERE project_id = ?1",
                    [key],
                )
                .map(|found| found.into_iter().next())
            })
            .await?;
        if let Some(project) = &project {
            self.projects.keep(version, project);
        }
        Ok(project)
    }

    async fn project_log(&self, id: &ProjectId) -> StoreResult<Vec<ProjectEntry>> {
        let id = id.to_string();
        self.with_reader(move |conn| {
            rows(
                conn,
                "project log entry",
                "SELECT entry FROM project_log WHERE project_id = ?1 ORDER BY seq",
                [id],
            )
        })
        .await
    }

    async fn member_projects(
        &self,
        member: &UserId,
        after: Option<&ProjectId>,
        limit: usize,
    ) -> StoreResult<Page<Project, ProjectId>> {
        let (member, after) = (member.to_string(), after.map(ToString::to_string));
        self.with_reader(move |conn| {
            let found: Vec<Project> = rows(
                conn,
                "project",
                "SELECT p.row FROM project_members m JOIN projects p USING (project_id)
                 WHERE m.user_id = ?1 AND (?2 IS NULL OR m.project_id > ?2)
                 ORDER BY m.project_id LIMIT ?3",
                params![member, after, sql_int(limit).saturating_add(1)],
            )?;
            Ok(Page::from_extra(found, limit, |p| p.id))
        })
        .await
    }

    async fn all_projects(
        &self,
        after: Option<&ProjectId>,
        limit: usize,
    ) -> StoreResult<Page<Project, ProjectId>> {
        let after = after.map(ToString::to_string);
        self.with_reader(move |conn| {
            let found: Vec<Project> = rows(
                conn,
                "project",
                "SELECT row FROM projects WHERE deleted = 0 AND (?1 IS NULL OR project_id > ?1)
                 ORDER BY project_id LIMIT ?2",
                params![after, sql_int(limit).saturating_add(1)],
            )?;
            Ok(Page::from_extra(found, limit, |p| p.id))
        })
        .await
    }

    async fn owned_projects(&self, owner: &Username) -> StoreResult<Vec<ProjectId>> {
        let owner = owner.to_string();
        self.with_reader(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT project_id FROM projects WHERE owner = ?1 AND deleted = 0
                     ORDER BY project_id",
                )
                .map_err(sql)?;
            let ids = statement
                .query_map([owner], |row| row.get::<_, String>(0))
                .map_err(sql)?;
            ids.map(|id| ProjectId::parse(&id.map_err(sql)?).map_err(|e| corrupt("project id", e)))
                .collect()
        })
        .await
    }

    async fn append_item(&self, entry: &ItemEntry, item: &Item) -> StoreResult<u64> {
        let (id, seq, entry) = (entry.stream.to_string(), entry.seq as i64, to_json(entry));
        let item = item.clone();
        let project = item.project_id.to_string();
        let (projects, changed) = (self.projects.clone(), item.project_id);
        let write = move |conn: &mut Connection| {
            append(
                conn,
                "INSERT INTO item_log (item_id, seq, entry) VALUES (?1, ?2, ?3)
                 ON CONFLICT (item_id, seq) DO NOTHING",
                params![id, seq, entry],
                (&project, Some(&id), seq),
                |tx| {
                    tx.execute(
                        "INSERT INTO items (item_id, project_id, version, status_rank, due_missing,
                           due_key, assignee, created_at, deleted, row)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (item_id) DO UPDATE SET version = excluded.version,
                           status_rank = excluded.status_rank, due_missing = excluded.due_missing,
                           due_key = excluded.due_key, assignee = excluded.assignee,
                           deleted = excluded.deleted, row = excluded.row",
                        params![
                            id,
                            item.project_id.to_string(),
                            item.version as i64,
                            status_rank(item.status),
                            item.due_date.is_none(),
                            item.due_date.map(|d| d.to_string()).unwrap_or_default(),
                            item.assignee.as_ref().map(Username::as_str),
                            taskgate_domain::timestamp::format(item.created_at),
                            item.deleted,
                            to_json(&item)
                        ],
                    )?;
                    Ok(())
                },
            )
        };
        self.with_conn_then(write, move || projects.changed(&changed))
            .await
    }

    fn project_version(&self, project: &ProjectId) -> Option<u64> {
        Some(self.projects.version(project))
    }

    async fn get_item(&self, id: &ItemId) -> StoreResult<Option<Item>> {
        let id = id.to_string();
        self.with_reader(move |conn| {
            rows(
                conn,
                "item",
                "SELECT row FROM items WHERE item_id = ?1",
                [id],
            )
            .map(|found| found.into_iter().next())
        })
        .await
    }

    async fn item_log(&self, id: &ItemId) -> StoreResult<Vec<ItemEntry>> {
        let id = id.to_string();
        self.with_reader(move |conn| {
            rows(
                conn,
                "item log entry",
                "SELECT entry FROM item_log WHERE item_id = ?1 ORDER BY seq",
                [id],
            )
        })
        .await
    }

    async fn feed_head(&self, project: &ProjectId) -> StoreResult<u64> {
        let project = project.to_string();
        self.with_reader(move |conn| {
            conn.query_row(
                "SELECT coalesce(max(position), 0) FROM project_feed WHERE project_id = ?1",
                [project],
                |row| row.get::<_, i64>(0),
            )
            .map(|head| head as u64)
            .map_err(sql)
        })
        .await
    }

    async fn project_feed(
        &self,
        project: &ProjectId,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<FeedEntry>> {
        let project = project.to_string();
        self.with_reader(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT f.position, f.item_id IS NULL, coalesce(i.entry, p.entry)
                       FROM project_feed f
                       LEFT JOIN item_log i ON i.item_id = f.item_id AND i.seq = f.seq
                       LEFT JOIN project_log p
                         ON f.item_id IS NULL AND p.project_id = f.project_id AND p.seq = f.seq
                      WHERE f.project_id = ?1 AND f.position > ?2
                      ORDER BY f.position LIMIT ?3",
                )
                .map_err(sql)?;
            let found = statement
                .query_map(params![project, sql_int(after), sql_int(limit)], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, bool>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                })
                .map_err(sql)?;
            found
                .map(|found| {
                    let (position, of_project, entry) = found.map_err(sql)?;
                    let entry = entry.ok_or_else(|| {
                        corrupt("project feed", format!("position {position} has no entry"))
                    })?;
                    let change = if of_project {
                        FeedChange::Project(from_json("project log entry", &entry)?)
                    } else {
                        FeedChange::Item(from_json("item log entry", &entry)?)
                    };
                    Ok(FeedEntry {
                        position: position as u64,
                        change,
                    })
                })
                .collect()
        })
        .await
    }

    async fn list_items(&self, query: &ItemQuery) -> StoreResult<Page<Item, Position>> {
        let listing = item_listing(query);
        let (sort, limit, budget) = (query.sort, query.limit, self.read_budget);
        self.with_reader(move |conn| {
            let position = |item: &Item| sort.position(item);
            // Most pages are found long before the bound; one whose filter
            // matches little of a large project would walk all of it.
            let (statement, values) = listing.statement(limit + 1);
            if let Some(found) = bounded(conn, budget, "item", &statement, values)? {
                return Ok(Page::from_extra(found, limit, position));
            }
            // Then the page is what matches in the next `budget` rows of the
            // walk; if that is not a full page, the cursor is the last of
            // those rows, so the next page goes on from there (as on
            // DynamoDB, a page may be short, and nothing is missed).
            let (statement, values) = listing.within_budget(budget, limit + 1);
            let found: Vec<Item> =
                rows(conn, "item", &statement, rusqlite::params_from_iter(values))?;
            if found.len() > limit {
                return Ok(Page::from_extra(found, limit, position));
            }
            let (statement, values) = listing.budget_end(budget);
            let end: Vec<Item> =
                rows(conn, "item", &statement, rusqlite::params_from_iter(values))?;
            Ok(Page {
                items: found,
                next: end.first().map(position),
            })
        })
        .await
    }

    async fn all_logs(&self) -> StoreResult<ProjectLogs> {
        self.with_conn(|conn| {
            let projects: Vec<ProjectEntry> = rows(
                conn,
                "project log entry",
                "SELECT entry FROM project_log ORDER BY project_id, seq",
                [],
            )?;
            let items: Vec<ItemEntry> = rows(
                conn,
                "item log entry",
                "SELECT entry FROM item_log ORDER BY item_id, seq",
                [],
            )?;
            Ok(ProjectLogs {
                projects: grouped(projects),
                items: grouped(items),
            })
        })
        .await
    }

    async fn assigned_items(
        &self,
        project: &ProjectId,
        username: &Username,
    ) -> StoreResult<Vec<Item>> {
        let (project, username) = (project.to_string(), username.to_string());
        self.with_reader(move |conn| {
            rows(
                conn,
                "item",
                "SELECT row FROM items WHERE assignee = ?1 AND project_id = ?2 AND deleted = 0
                 ORDER BY item_id",
                params![username, project],
            )
        })
        .await
    }
}

/// Groups entries (read in stream, seq order) by stream.
fn grouped<Id: Ord + Copy, Change>(
    entries: Vec<taskgate_domain::project::log::Entry<Id, Change>>,
) -> std::collections::BTreeMap<Id, Vec<taskgate_domain::project::log::Entry<Id, Change>>> {
    let mut logs = std::collections::BTreeMap::new();
    for entry in entries {
        logs.entry(entry.stream)
            .or_insert_with(Vec::new)
            .push(entry);
    }
    logs
}

/// The plan SQLite picks for a listing: for the query-plan test and
/// docs/access-patterns.md.
pub fn explain_listing(store: &EmbeddedStore, query: &ItemQuery) -> StoreResult<Vec<String>> {
    let (statement, values) = item_listing(query).statement(query.limit + 1);
    let conn = store.conn.lock().unwrap_or_else(|p| p.into_inner());
    let mut explain = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
        .map_err(sql)?;
    let details = explain
        .query_map(rusqlite::params_from_iter(values), |row| {
            row.get::<_, String>(3)
        })
        .map_err(sql)?;
    details.map(|d| d.map_err(sql)).collect()
}

/// What the store knows of its projects without a read: a version of each
/// ([`ProjectStore::project_version`]) and the projects read lately, each
/// kept with the version it was read at. Every append of a project's or an
/// item's entry through this store gives its project a new version once
/// committed, before it returns (even to a caller that gave up). Only this
/// store's server writes its database's projects (`taskgate audit` and
/// backups read), so nothing else can make what is kept stale.
#[derive(Default)]
pub(crate) struct ProjectCache {
    inner: std::sync::Mutex<Versions>,
}

#[derive(Default)]
struct Versions {
    /// The last version given: versions are drawn from one counter, so no
    /// project ever gets one again.
    last: u64,
    /// The version of every project not in `changed`: the counter when
    /// `changed` last started over (it is bounded).
    floor: u64,
    changed: std::collections::HashMap<ProjectId, u64>,
    projects: std::collections::HashMap<ProjectId, (u64, Project)>,
}

impl Versions {
    fn version(&self, project: &ProjectId) -> u64 {
        self.changed.get(project).copied().unwrap_or(self.floor)
    }
}

/// Most project versions and projects kept; past it each starts over.
const MAX_CACHED_PROJECTS: usize = 10_000;

impl ProjectCache {
    fn inner(&self) -> std::sync::MutexGuard<'_, Versions> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn version(&self, project: &ProjectId) -> u64 {
        self.inner().version(project)
    }

    /// The project if it is kept at its current version; otherwise that
    /// version, to read it at.
    fn get(&self, id: &ProjectId) -> Result<Project, u64> {
        let inner = self.inner();
        let version = inner.version(id);
        match inner.projects.get(id) {
            Some((at, project)) if *at == version => Ok(project.clone()),
            _ => Err(version),
        }
    }

    /// Keeps `project`, read after taking `version`, unless it has changed
    /// since (then what was read may be older than the change).
    fn keep(&self, version: u64, project: &Project) {
        let mut inner = self.inner();
        if inner.version(&project.id) != version {
            return;
        }
        if inner.projects.len() >= MAX_CACHED_PROJECTS {
            inner.projects.clear();
        }
        inner
            .projects
            .insert(project.id, (version, project.clone()));
    }

    fn changed(&self, project: &ProjectId) {
        let mut inner = self.inner();
        inner.last += 1;
        if inner.changed.len() >= MAX_CACHED_PROJECTS {
            // Every project not listed is at the floor: a version none
            // has had, so nothing kept before matches it.
            inner.changed.clear();
            inner.projects.clear();
            inner.floor = inner.last;
            inner.last += 1;
        }
        let version = inner.last;
        inner.changed.insert(*project, version);
        inner.projects.remove(project);
    }
}
