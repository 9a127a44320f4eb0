//! Storage ports: the narrow traits the adapters implement.
//!
//! Two adapters exist, the embedded store (`taskgate-embedded`) and DynamoDB
//! (`taskgate-aws`); one contract test suite (`tests/e2e/store_contract.rs`)
//! holds both to the behaviour described on each method.

use std::collections::BTreeMap;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::file::{BlobState, FileId, StoredFile};
use crate::project::listing::{ItemFilter, Position, Sort};
use crate::project::log::{Item, ItemEntry, Project, ProjectEntry};
use crate::project::{ItemId, ProjectId};
#[cfg(doc)]
use crate::security::LoginKey;
use crate::security::{LoginAttempts, SecurityEvent};
use crate::task::{Task, TaskError, TaskEvent, TaskId};
use crate::token::{TokenId, TokenRecord};
use crate::user::{Email, User, UserId, Username};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create found the key already taken.
    #[error("an item with this key already exists")]
    AlreadyExists,
    /// The item to change is gone, or changed since it was read (its
    /// version or identity no longer matches). Re-read and decide again.
    #[error("the item changed or disappeared since it was read")]
    Conflict,
    /// Another user has this e-mail address (compared case-insensitively).
    #[error("the e-mail address belongs to another user")]
    EmailTaken,
    /// The change would leave no admin account.
    #[error("the last admin account cannot be removed or demoted")]
    LastAdmin,
    /// The owner's files would pass their quota.
    #[error("the owner's files would exceed their quota")]
    OverQuota,
    /// The owner has as many files as they may keep.
    #[error("the owner has as many files as they may keep")]
    TooManyFiles,
    /// The owner has as many unfinished exports as they may.
    #[error("the owner has as many unfinished exports as they may")]
    TooManyExports,
    /// The backing service did not answer in time or refused service.
    #[error("the store is unavailable")]
    Unavailable(#[source] Cause),
    /// Anything else: a stored item that does not parse, an unexpected reply.
    #[error("the store failed")]
    Other(#[source] Cause),
}

/// What lies under an error: kept as a source, for the log, never flattened
/// into the error's own text (and never shown to clients).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

impl StoreError {
    /// The store cannot serve now (503 to clients, try again).
    pub fn unavailable(cause: impl Into<Cause>) -> Self {
        Self::Unavailable(cause.into())
    }

    /// Anything else that went wrong (500 to clients).
    pub fn other(cause: impl Into<Cause>) -> Self {
        Self::Other(cause.into())
    }
}

/// An error and every source under it, `: `-separated, for log lines.
pub struct Chain<'e>(pub &'e (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    /// Pass back as `after` to get the next page; `None` on the last page.
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// A page from up to `limit + 1` items read: the extra one, if any,
    /// says another page exists, and is dropped; `next` is the key of the
    /// last item kept.
    pub fn from_extra(mut items: Vec<T>, limit: usize, key: impl FnOnce(&T) -> C) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(key)
        } else {
            None
        };
        Self { items, next }
    }
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user. `AlreadyExists` if the username is taken,
    /// `EmailTaken` if another user has the e-mail address (in any case).
    async fn insert_user(&self, user: &User) -> StoreResult<()>;

    /// The user with this username, if any (strongly consistent).
    async fn get_user(&self, username: &Username) -> StoreResult<Option<User>>;

    /// The user with this e-mail address, in any case, if any.
    async fn get_user_by_email(&self, email: &Email) -> StoreResult<Option<User>>;

    /// Up to `limit` users whose usernames come after `after` in the store's
    /// listing order. Every user appears on exactly one page of a full walk
    /// (users changed during the walk may or may not appear).
    async fn list_users(
        &self,
        after: Option<&Username>,
        limit: usize,
    ) -> StoreResult<Page<User, Username>>;

    /// Replaces `current` with `next` (same username, `next.version` =
    /// `current.version + 1`). `Conflict` if the stored user is not exactly
    /// `current`'s identity and version; `LastAdmin` if `next` demotes the
    /// only admin; `EmailTaken` if `next`'s address is another user's.
    async fn update_user(&self, current: &User, next: &User) -> StoreResult<()>;

    /// Deletes `user` if the stored user still has its `user_id` and level.
    /// `Conflict` otherwise (including when it is already gone); `LastAdmin`
    /// if it is the only admin.
    async fn delete_user(&self, user: &User) -> StoreResult<()>;

    /// How many admin accounts exist.
    async fn count_admins(&self) -> StoreResult<u64>;
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Records an issued token. `AlreadyExists` if the `jti` is taken.
    async fn insert_token(&self, token: &TokenRecord) -> StoreResult<()>;

    /// The record for `jti`, if it has not been revoked. Stores may keep
    /// expired records for a while; callers check `expires_at`.
    async fn get_token(&self, jti: &TokenId) -> StoreResult<Option<TokenRecord>>;

    /// Revokes one token. Revoking an unknown token is not an error.
    async fn delete_token(&self, jti: &TokenId) -> StoreResult<()>;

    /// Revokes every token issued to `username`, except `keep` if given.
    /// Returns how many were revoked.
    async fn delete_user_tokens(
        &self,
        username: &Username,
        keep: Option<&TokenId>,
    ) -> StoreResult<usize>;
}

/// Everything one authenticated request needs, in one round trip where the
/// backend allows it (DynamoDB: one BatchGetItem over both tables).
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn load_session(
        &self,
        jti: &TokenId,
        username: &Username,
    ) -> StoreResult<(Option<TokenRecord>, Option<User>)>;
}

/// The append-only task event log.
#[async_trait]
pub trait TaskLog: Send + Sync {
    /// Appends `event` if no event with its (task, seq) exists; otherwise
    /// `AlreadyExists`, and nothing is written. Two writers racing for the
    /// same seq: exactly one wins.
    async fn append_event(&self, event: &TaskEvent) -> StoreResult<()>;

    /// Appends a task's `created` event (seq 1) if its owner has fewer
    /// than `max_active` tasks that have not ended; `OverQuota` otherwise,
    /// and nothing is written. With `max_exports` (the task is an export),
    /// also if the owner has fewer than that many unfinished exports;
    /// `TooManyExports` otherwise. Race-safe: concurrent creations cannot
    /// pass a bound together. `AlreadyExists` as for
    /// [`TaskLog::append_event`].
    async fn append_created(
        &self,
        event: &TaskEvent,
        max_active: u64,
        max_exports: Option<u64>,
    ) -> StoreResult<()>;

    /// Appends a task's ending event (`succeeded`, `failed`, `cancelled`),
    /// as [`TaskLog::append_event`] does, and counts the task as no longer
    /// active for `owner` (nor as an unfinished export, with `export`).
    async fn append_ending(
        &self,
        event: &TaskEvent,
        owner: &UserId,
        export: bool,
    ) -> StoreResult<()>;

    /// How many of `owner`'s tasks have not ended (pending or running), as
    /// counted since the count began (see README: tasks from before it are
    /// not counted on DynamoDB).
    async fn active_tasks(&self, owner: &UserId) -> StoreResult<u64>;

    /// Records how far a running task has got (0 to 1). Progress is kept
    /// beside the log, not in it: it is a reading, not history, so it is
    /// neither numbered nor hash-chained, and a later report replaces an
    /// earlier one. Recording it for a task that does not exist is allowed
    /// and harmless.
    async fn record_progress(&self, task: &TaskId, progress: f64) -> StoreResult<()>;

    /// The progress last recorded for `task`, if any.
    async fn task_progress(&self, task: &TaskId) -> StoreResult<Option<f64>>;

    /// A task's events in seq order (strongly consistent); empty if none.
    async fn task_events(&self, task: &TaskId) -> StoreResult<Vec<TaskEvent>>;

    /// Ids of the tasks `owner` created, newest first, starting after
    /// `after` (the last id of the previous page).
    async fn owner_tasks(
        &self,
        owner: &UserId,
        after: Option<&TaskId>,
        limit: usize,
    ) -> StoreResult<Page<TaskId, TaskId>>;

    /// The whole log, a page at a time, in no promised order (callers group
    /// by task). For audits and recovery, not for serving requests.
    async fn scan_events(
        &self,
        after: Option<&(TaskId, u64)>,
        limit: usize,
    ) -> StoreResult<Page<TaskEvent, (TaskId, u64)>>;

    /// The whole log, scanned page by page, grouped by task and in seq order
    /// within each task. For audits and recovery.
    async fn events_by_task(&self) -> StoreResult<BTreeMap<TaskId, Vec<TaskEvent>>> {
        let mut by_task: BTreeMap<TaskId, Vec<TaskEvent>> = BTreeMap::new();
        let mut after = None;
        loop {
            let page = self.scan_events(after.as_ref(), 1000).await?;
            for event in page.items {
                by_task.entry(event.stream).or_default().push(event);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        for events in by_task.values_mut() {
            events.sort_by_key(|e| e.seq);
        }
        Ok(by_task)
    }
}

/// The security audit log and the login-attempt counters.
#[async_trait]
pub trait SecurityStore: Send + Sync {
    /// The failures counted for a login key (see [`LoginKey::as_key`]).
    async fn login_attempts(&self, key: &str) -> StoreResult<Option<LoginAttempts>>;

    /// Stores `next` for `key` if what is stored is still `seen` (same
    /// failure count, or none stored when `seen` is `None`); `Conflict`
    /// otherwise, and nothing is written. Concurrent attempts thus each
    /// count once.
    async fn put_login_attempts(
        &self,
        key: &str,
        seen: Option<&LoginAttempts>,
        next: &LoginAttempts,
    ) -> StoreResult<()>;

    /// Forgets the failures of `key` (after a successful login).
    async fn clear_login_attempts(&self, key: &str) -> StoreResult<()>;

    /// Appends `event` to the security log. Events are never changed or
    /// removed; an id that exists already is `AlreadyExists`.
    async fn append_security_event(&self, event: &SecurityEvent) -> StoreResult<()>;

    /// The log newest first, starting after the event with id `after`.
    async fn security_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<SecurityEvent, String>>;
}

/// All the storage ports one backend provides, as one object the HTTP layer holds.
pub trait Store:
    UserStore
    + TokenStore
    + SessionStore
    + TaskLog
    + SecurityStore
    + ProjectStore
    + FileStore
    + IdempotencyStore
{
}

/// A response kept for an idempotency key, to answer a retry with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptResponse {
    pub status: u16,
    /// The headers worth repeating (`Location`, `Content-Type`, `ETag`).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What claiming an idempotency key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nobody had it (or it had expired): the request goes ahead.
    New,
    /// The same request was answered before: this is the answer.
    Done(KeptResponse),
    /// The same request is being handled right now.
    InProgress,
    /// The key was used with another request.
    Mismatch,
}

/// `Idempotency-Key`s: each claimed by one request (its fingerprint) for a
/// while, then holding that request's response.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `scope` (the caller and their key) for the request with
    /// `fingerprint` until `expires_at`, unless an unexpired claim exists.
    /// Race-safe: of two claims at once, one is `New`.
    async fn claim_key(
        &self,
        scope: &str,
        fingerprint: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> StoreResult<Claim>;

    /// Keeps `response` for the claim (made by [`IdempotencyStore::claim_key`]),
    /// until `expires_at` (a claim is short, the answer it keeps long: a
    /// claim its request never answered, its process killed, frees the key
    /// when its own expiry passes).
    async fn keep_response(
        &self,
        scope: &str,
        fingerprint: &str,
        response: &KeptResponse,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Drops an unanswered claim (the request failed in a way worth
    /// retrying), so the key can be used again.
    async fn release_key(&self, scope: &str, fingerprint: &str) -> StoreResult<()>;
}

/// The records of files and uploads (their bytes are a [`BlobStore`]'s).
#[async_trait]
pub trait FileStore: Send + Sync {
    /// Records a new upload if the owner's files (the sizes of all of them,
    /// finished or not) plus this one stay within `quota` bytes, and they
    /// have fewer than `max_files` files; `OverQuota` or `TooManyFiles`
    /// otherwise, and nothing is written. Race-safe: two uploads that each
    /// fit alone cannot both pass a bound they exceed together.
    async fn insert_file(&self, file: &StoredFile, quota: u64, max_files: u64) -> StoreResult<()>;

    /// The file, if it exists (strongly consistent).
    async fn get_file(&self, id: &FileId) -> StoreResult<Option<StoredFile>>;

    /// Replaces `current` with `next` (same id, `next.version` =
    /// `current.version + 1`, same size). `Conflict` if the stored record is
    /// not at `current.version`, and nothing is written.
    async fn update_file(&self, current: &StoredFile, next: &StoredFile) -> StoreResult<()>;

    /// Deletes the record if it is still at `file.version` (`Conflict`
    /// otherwise); its size no longer counts against the owner's quota.
    async fn delete_file(&self, file: &StoredFile) -> StoreResult<()>;

    /// Up to `limit` files of `owner`, newest first, after `after`.
    async fn owner_files(
        &self,
        owner: &UserId,
        after: Option<&FileId>,
        limit: usize,
    ) -> StoreResult<Page<StoredFile, FileId>>;

    /// Up to `limit` unfinished uploads that expired before `now`.
    async fn expired_uploads(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<StoredFile>>;

    /// The bytes `owner`'s files take against their quota.
    async fn used_bytes(&self, owner: &UserId) -> StoreResult<u64>;
}

/// Bytes as they stream.
pub type ByteStream = std::pin::Pin<
    Box<dyn futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The blob is not there (deleted, expired, never finished).
    #[error("no such blob")]
    Missing,
    /// The backing service did not answer or refused service.
    #[error("the blob store is unavailable")]
    Unavailable(#[source] Cause),
    #[error("the blob store failed")]
    Other(#[source] Cause),
}

/// What an append stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Appended {
    /// The adapter's state with the new bytes (pending until committed).
    pub state: BlobState,
    /// How many bytes were stored.
    pub bytes: u64,
    /// The body ended early (the client's connection was cut): `bytes` is
    /// what had arrived, all of it stored.
    pub cut: bool,
    /// The body had more than `max` bytes; the rest was not read.
    pub truncated: bool,
}

/// What a [`BodyReader`] read of a body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Bytes handed out.
    pub bytes: u64,
    /// The body failed part-way (the connection was cut).
    pub cut: bool,
    /// The body had more than `max` bytes; the rest was not read.
    pub truncated: bool,
}

/// Reads a body for an append, as [`BlobStore::append`] says: hands out
/// every byte read, piece by piece, up to `max` bytes (the rest is not
/// read); a body that fails part-way ends it, and what arrived before
/// counts. Every adapter's append reads its body through one.
pub struct BodyReader {
    body: ByteStream,
    max: u64,
    done: bool,
    /// What was read so far.
    pub taken: Taken,
}

impl BodyReader {
    pub fn new(body: ByteStream, max: u64) -> Self {
        Self {
            body,
            max,
            done: false,
            taken: Taken::default(),
        }
    }

    /// The next piece to store, or `None` when the body (or the room) ended.
    pub async fn next(&mut self) -> Option<bytes::Bytes> {
        while !self.done {
            let piece =
                std::future::poll_fn(|cx| futures_core::Stream::poll_next(self.body.as_mut(), cx))
                    .await;
            let piece = match piece {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(_)) => {
                    self.done = true;
                    self.taken.cut = true;
                    return None;
                }
                Some(Ok(piece)) => piece,
            };
            let take = (piece.len() as u64).min(self.max - self.taken.bytes) as usize;
            if take < piece.len() {
                self.done = true;
                self.taken.truncated = true;
            }
            if take > 0 {
                self.taken.bytes += take as u64;
                return Some(piece.slice(..take));
            }
        }
        None
    }
}

/// The bytes of files: a directory of the data directory locally, S3 on
/// AWS. An upload's bytes arrive in appends; an append is pending until the
/// caller has recorded it (its offset) and calls [`BlobStore::commit`], or
/// drops it with [`BlobStore::rollback`] (e.g. a checksum mismatch). One
/// contract suite holds both adapters to this.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Prepares storage for the upload `id`; the state to keep with it.
    async fn start(&self, id: &FileId) -> Result<BlobState, BlobError>;

    /// Stores what `body` yields after the `offset` bytes `state` holds, at
    /// most `max` bytes (the caller checks lengths; the adapter stops
    /// reading there). Every byte read from `body` is stored, also when the
    /// body fails part-way (then `cut`). On an adapter error nothing of this
    /// append counts.
    async fn append(
        &self,
        id: &FileId,
        state: &BlobState,
        offset: u64,
        body: ByteStream,
        max: u64,
    ) -> Result<Appended, BlobError>;

    /// Makes a pending append part of the upload (it was recorded).
    async fn commit(
        &self,
        id: &FileId,
        before: &BlobState,
        after: &BlobState,
    ) -> Result<(), BlobError>;

    /// Drops a pending append: the upload is as it was at `before`.
    async fn rollback(
        &self,
        id: &FileId,
        before: &BlobState,
        pending: &BlobState,
    ) -> Result<(), BlobError>;

    /// Turns a fully arrived upload of `size` bytes into a file.
    async fn finish(&self, id: &FileId, state: &BlobState, size: u64) -> Result<(), BlobError>;

    /// Removes everything of an unfinished upload (nothing of it remains).
    async fn abort(&self, id: &FileId, state: &BlobState) -> Result<(), BlobError>;

    /// The bytes `range` (end exclusive) of a finished file of `size` bytes.
    async fn read(
        &self,
        id: &FileId,
        range: std::ops::Range<u64>,
        size: u64,
    ) -> Result<ByteStream, BlobError>;

    /// Deletes a finished file's bytes. Deleting a missing one is not an
    /// error.
    async fn delete(&self, id: &FileId) -> Result<(), BlobError>;

    /// A short-lived URL (for `ttl`) that serves a finished file's bytes
    /// directly (with `name` and `content_type` in its answer's headers),
    /// where the store can make one (S3); `None` where the server streams
    /// them itself.
    async fn download_url(
        &self,
        _id: &FileId,
        _ttl: std::time::Duration,
        _name: &str,
        _content_type: &str,
    ) -> Result<Option<String>, BlobError> {
        Ok(None)
    }
}

/// Which projects' items a listing covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ItemScope {
    /// One project (`GET /projects/{id}/items`).
    Project(ProjectId),
    /// Every project `UserId` is a member of (`GET /items`).
    MemberOf(UserId),
}

/// One page of an item listing: which items, in which order, from where.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ItemQuery {
    pub scope: ItemScope,
    pub filter: ItemFilter,
    pub sort: Sort,
    /// "Today" in the caller's time zone, for the `due` filter.
    pub today: jiff::civil::Date,
    /// The position of the previous page's last item.
    pub after: Option<Position>,
    pub limit: usize,
}

/// Projects, their members and their work items. Every change is an entry
/// of a hash-chained log written in one transaction with the current-state
/// row it produces (the fold of the log so far), so queries read rows,
/// history reads logs, and an audit can rebuild each row from its log.
#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Appends `entry` to its project's log and stores `project` (the fold
    /// after it) as the project's row, atomically. `Conflict` if the log
    /// already has an entry with that seq: another change got there first.
    /// Returns the entry's position in the project's feed
    /// ([`ProjectStore::project_feed`]).
    async fn append_project(&self, entry: &ProjectEntry, project: &Project) -> StoreResult<u64>;

    /// The project's row, deleted or not (callers hide deleted ones).
    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>>;

    /// The project's log, in seq order.
    async fn project_log(&self, id: &ProjectId) -> StoreResult<Vec<ProjectEntry>>;

    /// Up to `limit` live projects `member` belongs to, by id after `after`.
    async fn member_projects(
        &self,
        member: &UserId,
        after: Option<&ProjectId>,
        limit: usize,
    ) -> StoreResult<Page<Project, ProjectId>>;

    /// Up to `limit` live projects of anyone, by id after `after`.
    async fn all_projects(
        &self,
        after: Option<&ProjectId>,
        limit: usize,
    ) -> StoreResult<Page<Project, ProjectId>>;

    /// The live projects `owner` owns (such a user may not be deleted).
    async fn owned_projects(&self, owner: &Username) -> StoreResult<Vec<ProjectId>>;

    /// Appends `entry` to its item's log and stores `item` (the fold after
    /// it) as the item's row, atomically. `Conflict` as for projects.
    /// Returns the entry's position in the project's feed.
    async fn append_item(&self, entry: &ItemEntry, item: &Item) -> StoreResult<u64>;

    /// The project's feed: every entry of its own log and of its items'
    /// logs, each at the position its append was given, in one order
    /// (positions 1, 2, 3, … with no gaps, assigned in the order the appends
    /// committed). Up to `limit` entries after position `after`; an append
    /// that has returned is always included (read-your-writes). Real-time
    /// subscribers replay from it.
    async fn project_feed(
        &self,
        project: &ProjectId,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<FeedEntry>>;

    /// A number that every change to `project` or one of its items through
    /// this store replaces with one never used before, after the change
    /// commits and before it returns; `None` where the store cannot tell
    /// without a read (then nothing read may be kept). What was read after
    /// taking version `v` shows every change that had returned by then, so
    /// while the version is still `v` it may be answered again.
    fn project_version(&self, _project: &ProjectId) -> Option<u64> {
        None
    }

    /// The last position taken in the project's feed (0 when none is),
    /// counting every append that has returned.
    async fn feed_head(&self, project: &ProjectId) -> StoreResult<u64>;

    /// The item's row, deleted or not.
    async fn get_item(&self, id: &ItemId) -> StoreResult<Option<Item>>;

    /// The item's log, in seq order.
    async fn item_log(&self, id: &ItemId) -> StoreResult<Vec<ItemEntry>>;

    /// One page of the live items `query` selects, in its order. Every item
    /// is on exactly one page of a full walk, however items are added
    /// meanwhile (added ones appear on a later page or not at all).
    async fn list_items(&self, query: &ItemQuery) -> StoreResult<Page<Item, Position>>;

    /// The live items of `project` assigned to `username`.
    async fn assigned_items(
        &self,
        project: &ProjectId,
        username: &Username,
    ) -> StoreResult<Vec<Item>>;

    /// Every project's and item's log, each in seq order: for audits only
    /// (it reads everything; on DynamoDB a Scan of the log table).
    async fn all_logs(&self) -> StoreResult<ProjectLogs>;
}

/// An entry of a project's feed ([`ProjectStore::project_feed`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    /// 1 for the first entry appended after feeds existed, then +1 each.
    pub position: u64,
    pub change: FeedChange,
}

/// Which log a feed entry belongs to.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedChange {
    Project(ProjectEntry),
    Item(ItemEntry),
}

/// Every log of projects and items, by id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectLogs {
    pub projects: BTreeMap<ProjectId, Vec<ProjectEntry>>,
    pub items: BTreeMap<ItemId, Vec<ItemEntry>>,
}

impl<
    T: UserStore
        + TokenStore
        + SessionStore
        + TaskLog
        + SecurityStore
        + ProjectStore
        + FileStore
        + IdempotencyStore,
> Store for T
{
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The engine did not answer or refused service; try again later.
    #[error("the workflow engine is unavailable: {0}")]
    Unavailable(String),
    #[error("workflow error: {0}")]
    Other(String),
}

/// Runs tasks: Step Functions on AWS, an in-process engine locally. The
/// engine records `started` and, later, the outcome in the task log itself.
#[async_trait]
pub trait Workflow: Send + Sync {
    /// Starts running `task` (just created) and records `started` with the
    /// execution's id, before the run can record an outcome. Returns the task
    /// as it stands afterwards. Starting a task twice starts it once.
    async fn start(&self, task: &Task) -> Result<Task, WorkflowError>;

    /// Stops the run of `task`, if it is still going. Called after the
    /// `cancelled` event is recorded; stopping a finished run is not an error.
    async fn stop(&self, task: &TaskId) -> Result<(), WorkflowError>;

    /// The name recorded in the tasks this engine is to run (`created`'s
    /// `engine`), if it has one.
    fn engine(&self) -> Option<String> {
        None
    }
}

/// A script's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct JsOutput {
    /// The script's value through `JSON.stringify` semantics (`null` when
    /// there is nothing to stringify).
    pub result: serde_json::Value,
    pub logs: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JsFailure {
    pub error: TaskError,
    pub logs: Vec<String>,
}

/// Runs untrusted JavaScript somewhere it cannot hurt the caller.
#[async_trait]
pub trait JsRunner: Send + Sync {
    /// Runs `code` for `task`. Resolving `cancel` stops the run at once
    /// (the failure then has code `cancelled`).
    async fn run(
        &self,
        task: &TaskId,
        code: &str,
        cancel: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Result<JsOutput, JsFailure>;
}

/// Why an export made no file.
#[derive(Clone, Debug, PartialEq)]
pub enum ExportFailure {
    /// It was told to stop (cancelled, or the server is shutting down).
    Stopped,
    /// It could not be done (the task fails with this error).
    Failed(TaskError),
}

/// What an export reports to, and asks, whoever runs it.
#[async_trait]
pub trait ExportControl: Send + Sync {
    /// How far it has got, 0 to 1 (now and then, not for every byte).
    async fn progress(&self, fraction: f64);

    /// Whether to stop now (asked between chunks).
    async fn stopped(&self) -> bool;
}

/// Writes export tasks' files: the same code under the local engine and in
/// the state machine's export step.
#[async_trait]
pub trait Exporter: Send + Sync {
    /// Writes what `task` (an export) asks for into a new complete file of
    /// its owner's and returns the task's result, `{"file", "size",
    /// "sha256"}`. When it stops or fails, nothing of the file remains: no
    /// record, no bytes, no multipart upload.
    async fn export(
        &self,
        task: &Task,
        control: &dyn ExportControl,
    ) -> Result<serde_json::Value, ExportFailure>;

    /// Removes the file an export made (`result` as [`Exporter::export`]
    /// returned it) when its task ended otherwise meanwhile (a cancel that
    /// won the race with the `succeeded` event).
    async fn discard(&self, result: &serde_json::Value);

    /// Removes whatever an export of `task` that was interrupted (the
    /// process died) may have left. Best effort; logs what it cannot do.
    async fn clean_up(&self, task: &TaskId);
}
