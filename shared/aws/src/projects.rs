//! `ProjectStore` on DynamoDB: the ProjectLog table (one item per log
//! entry, key (`stream`, `seq`)) and the Projects table (current-state rows
//! of projects, memberships and items, with sparse indexes for listings).
//!
//! A change is one TransactWriteItems: the log entry, conditional on
//! `attribute_not_exists(stream)` (its seq is free), and the row,
//! conditional on still being at the previous version; membership rows
//! follow the project's members in the same transaction. A lost race is
//! `Conflict`.
//!
//! Listings are Queries on the index of their sort order (never a Scan),
//! with the other filters as a FilterExpression, reading at most
//! [`READ_BUDGET`] items per project per page: a page may hold fewer items
//! than asked, and its cursor then points where reading stopped. The access
//! patterns and their costs are in docs/access-patterns.md.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnConsumedCapacity, TransactWriteItem, Update,
};
use taskgate_domain::ports::{
    FeedChange, FeedEntry, ItemQuery, ItemScope, Page, ProjectLogs, ProjectStore, StoreError,
    StoreResult,
};
use taskgate_domain::project::listing::{Assignee, Due, Position, SortKey, Value};
use taskgate_domain::project::log::{Item, ItemEntry, Project, ProjectEntry};
use taskgate_domain::project::{DueDate, ItemId, ItemStatus, ProjectId};
use taskgate_domain::user::{UserId, Username};
use time::OffsetDateTime;

use crate::DynamoStore;
use crate::attr::{Row, n, s};
use crate::errors::{build_error, corrupt, store_error, transact};
use crate::tables::{
    FEED_KEY, FEED_POSITION, ITEMS_BY_ASSIGNEE, ITEMS_BY_CREATED, ITEMS_BY_DUE, ITEMS_BY_STATUS,
    PROJECT_FEED, PROJECTS_BY_OWNER, PROJECTS_LIVE,
};

/// Items read (before filtering) per project for one page, at most (the
/// default of [`DynamoStore::with_read_budget`]).
pub const READ_BUDGET: usize = 500;

fn project_key(id: &ProjectId) -> String {
    format!("project#{id}")
}

fn item_key(id: &ItemId) -> String {
    format!("item#{id}")
}

fn member_key(user: &UserId) -> String {
    format!("member#{user}")
}

fn status_rank(status: ItemStatus) -> usize {
    ItemStatus::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in ALL")
}

fn created_key(at: OffsetDateTime, id: &ItemId) -> String {
    format!("{}#{id}", taskgate_domain::timestamp::format(at))
}

fn status_key(status: ItemStatus, id: &ItemId) -> String {
    format!("{}#{id}", status_rank(status))
}

/// `0#<date>#<id>` for dated items, `1##<id>` for undated ones (which sort
/// after every date).
fn due_key(due: Option<DueDate>, id: &ItemId) -> String {
    match due {
        Some(date) => format!("0#{date}#{id}"),
        None => format!("1##{id}"),
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("rows and entries always serialise")
}

fn from_row<T: serde::de::DeserializeOwned>(
    what: &str,
    row: &Row,
    attribute: &str,
) -> StoreResult<T> {
    match row.get(attribute) {
        Some(AttributeValue::S(text)) => serde_json::from_str(text).map_err(|e| corrupt(what, e)),
        _ => Err(corrupt(what, format!("no {attribute} attribute"))),
    }
}

/// The log entry's put, at `position` of `project`'s feed (the feed index's
/// keys).
fn log_put(
    table: &str,
    stream: String,
    seq: u64,
    entry: String,
    (project, position): (&ProjectId, u64),
) -> StoreResult<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(HashMap::from([
            ("stream".to_owned(), s(stream)),
            ("seq".to_owned(), n(seq)),
            ("entry".to_owned(), s(entry)),
            (FEED_KEY.to_owned(), s(project.to_string())),
            (FEED_POSITION.to_owned(), n(position)),
        ])))
        // `stream` is a reserved word in expressions.
        .condition_expression("attribute_not_exists(#stream)")
        .expression_attribute_names("#stream", "stream")
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Moves `project`'s feed head from `position - 1` to `position`: two
/// appends to one project's logs cannot take the same position, and a
/// position is only ever taken once every earlier one is.
fn feed_update(table: &str, project: &ProjectId, position: u64) -> StoreResult<TransactWriteItem> {
    let update = Update::builder()
        .table_name(table)
        .key("pk", s(project_key(project)))
        .key("sk", s("feed"))
        .update_expression("SET head = :position")
        .condition_expression(if position == 1 {
            "attribute_not_exists(head)"
        } else {
            "head = :previous"
        })
        .expression_attribute_values(":position", n(position));
    let update = if position == 1 {
        update
    } else {
        update.expression_attribute_values(":previous", n(position - 1))
    };
    Ok(TransactWriteItem::builder()
        .update(update.build().map_err(build_error)?)
        .build())
}

/// The row put, conditional on the stored row being at `seq - 1` (or absent
/// for a creation).
fn row_put(table: &str, row: Row, seq: u64) -> StoreResult<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(row))
        .condition_expression("attribute_not_exists(pk) OR version = :previous")
        .expression_attribute_values(":previous", n(seq - 1))
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn project_row(project: &Project) -> Row {
    let mut row = HashMap::from([
        ("pk".to_owned(), s(project_key(&project.id))),
        ("sk".to_owned(), s("row")),
        ("version".to_owned(), n(project.version)),
        ("row".to_owned(), s(json(project))),
    ]);
    if !project.deleted {
        row.insert("owner_live".to_owned(), s(project.owner.as_str()));
        row.insert("live".to_owned(), s("project"));
    }
    row
}

fn item_row(item: &Item) -> Row {
    let mut row = HashMap::from([
        ("pk".to_owned(), s(item_key(&item.id))),
        ("sk".to_owned(), s("row")),
        ("version".to_owned(), n(item.version)),
        ("row".to_owned(), s(json(item))),
    ]);
    if !item.deleted {
        row.extend([
            ("item_project".to_owned(), s(item.project_id.to_string())),
            (
                "created_key".to_owned(),
                s(created_key(item.created_at, &item.id)),
            ),
            (
                "status_key".to_owned(),
                s(status_key(item.status, &item.id)),
            ),
            ("due_key".to_owned(), s(due_key(item.due_date, &item.id))),
            ("status_rank".to_owned(), n(status_rank(item.status))),
            (
                "due_missing".to_owned(),
                n(u8::from(item.due_date.is_none())),
            ),
        ]);
        if let Some(date) = item.due_date {
            row.insert("due_date".to_owned(), s(date.to_string()));
        }
        if let Some(assignee) = &item.assignee {
            row.insert("assignee".to_owned(), s(assignee.as_str()));
            row.insert(
                "assignee_key".to_owned(),
                s(format!("{}#{assignee}", item.project_id)),
            );
        }
    }
    row
}

/// The membership rows a project has: none once deleted.
fn memberships(project: &Project) -> HashSet<UserId> {
    if project.deleted {
        return HashSet::new();
    }
    project.members.values().map(|m| m.user_id).collect()
}

/// Where a page stopped: the position of the item with these index keys.
fn position_of(sort_key: SortKey, descending: bool, row: &Row) -> StoreResult<Position> {
    let attribute = match sort_key {
        SortKey::CreatedAt => "created_key",
        SortKey::Status => "status_key",
        SortKey::DueDate => "due_key",
    };
    let Some(AttributeValue::S(key)) = row.get(attribute) else {
        return Err(corrupt("item index key", format!("no {attribute}")));
    };
    let bad = || corrupt("item index key", key.clone());
    let (head, id) = key.rsplit_once('#').ok_or_else(bad)?;
    let id = ItemId::parse(id).map_err(|_| bad())?;
    let value = match sort_key {
        SortKey::CreatedAt => {
            Value::CreatedAt(taskgate_domain::timestamp::parse(head).map_err(|_| bad())?)
        }
        SortKey::Status => {
            let rank: usize = head.parse().map_err(|_| bad())?;
            Value::Status(*ItemStatus::ALL.get(rank).ok_or_else(bad)?)
        }
        SortKey::DueDate => match head.split_once('#').ok_or_else(bad)? {
            ("1", _) => Value::Due(None),
            (_, date) => Value::Due(Some(DueDate::parse(date).map_err(|_| bad())?)),
        },
    };
    Ok(Position {
        descending,
        value,
        id,
    })
}

/// The index keys of an item at `position` (an exclusive start key).
fn start_key(project: &ProjectId, position: &Position) -> Row {
    let (attribute, value) = match position.value {
        Value::CreatedAt(at) => ("created_key", created_key(at, &position.id)),
        Value::Status(status) => ("status_key", status_key(status, &position.id)),
        Value::Due(due) => ("due_key", due_key(due, &position.id)),
    };
    HashMap::from([
        ("item_project".to_owned(), s(project.to_string())),
        (attribute.to_owned(), s(value)),
        ("pk".to_owned(), s(item_key(&position.id))),
        ("sk".to_owned(), s("row")),
    ])
}

/// What one project contributes to a page: the matching items read, in
/// order, and where reading stopped if the budget ran out first.
struct Source {
    items: Vec<(Position, Item)>,
    stopped: Option<Position>,
    /// Read capacity units the queries consumed (as DynamoDB reports them).
    read_units: f64,
}

/// Why a transaction did not land.
enum Lost {
    /// The entry's seq or the row's version was taken (or another
    /// transaction was writing the same items): re-read and decide again.
    Race,
    /// Only the feed head moved (or another change of the project was
    /// taking it): take the next position and try again, after a pause.
    Feed,
    Failed(StoreError),
}

/// How often an append retries after losing only the feed position (each
/// loss means another change of the project committed meanwhile). One
/// project's changes take its feed's positions one at a time, so with k
/// writers at once each attempt is lost with a chance of about (k-1)/k: 32
/// attempts failed about 1 in 100 appends of 8 steady writers (seen while
/// seeding the benchmark's project); 64 fail about 1 in 5,000, each attempt
/// a transaction and a pause of at most 64 ms.
const FEED_ATTEMPTS: usize = 64;

/// A random pause before the `attempt`th retry for a feed position: up to
/// 1, 2, 4 … 64 ms, so that writers racing for one project's head spread
/// out instead of colliding again in step.
fn feed_backoff(attempt: usize) -> std::time::Duration {
    use rand::RngExt as _;
    let cap = 1u64 << attempt.min(6);
    std::time::Duration::from_micros(rand::rng().random_range(0..=cap * 1000))
}

impl DynamoStore {
    /// Runs the transaction whose first three items are the log entry, the
    /// row and the feed update ([`feed_update`]).
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), Lost> {
        match transact(&self.client, items).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(c))
                if c.failed_at(0) || c.failed_at(1) || c.conflicted_at(0) || c.conflicted_at(1) =>
            {
                Err(Lost::Race)
            }
            // The head moved, or another transaction was moving it (or
            // writing the project's other rows): nothing this change decided
            // on was touched.
            Ok(Err(c)) if c.failed_at(2) || c.conflicted() => Err(Lost::Feed),
            Ok(Err(c)) => Err(Lost::Failed(StoreError::other(format!(
                "a project transaction was cancelled unexpectedly: {c:?}"
            )))),
            Err(e) => Err(Lost::Failed(e)),
        }
    }

    /// Up to `limit` entries of `project`'s feed after `after`, as the feed
    /// index has them.
    async fn read_feed(
        &self,
        project: &ProjectId,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<FeedEntry>> {
        let mut found = Vec::new();
        let mut start = None;
        while found.len() < limit {
            let output = self
                .client
                .query()
                .table_name(&self.tables.project_log)
                .index_name(PROJECT_FEED)
                .key_condition_expression(format!("{FEED_KEY} = :p AND {FEED_POSITION} > :after"))
                .expression_attribute_values(":p", s(project.to_string()))
                .expression_attribute_values(":after", n(after))
                .set_exclusive_start_key(start.take())
                .limit((limit - found.len()) as i32)
                .send()
                .await
                .map_err(store_error)?;
            for row in output.items() {
                let position = match row.get(FEED_POSITION) {
                    Some(AttributeValue::N(p)) => {
                        p.parse().map_err(|e| corrupt("feed position", e))?
                    }
                    _ => return Err(corrupt("feed entry", "no position")),
                };
                let change = match row.get("stream") {
                    Some(AttributeValue::S(stream)) if stream.starts_with("project#") => {
                        FeedChange::Project(from_row("project log entry", row, "entry")?)
                    }
                    Some(AttributeValue::S(_)) => {
                        FeedChange::Item(from_row("item log entry", row, "entry")?)
                    }
                    _ => return Err(corrupt("feed entry", "no stream")),
                };
                found.push(FeedEntry { position, change });
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        Ok(found)
    }

    /// The last position taken in `project`'s feed (0 when none is).
    async fn feed_head(&self, project: &ProjectId) -> StoreResult<u64> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.projects)
            .key("pk", s(project_key(project)))
            .key("sk", s("feed"))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        match output.item.as_ref().and_then(|row| row.get("head")) {
            None => Ok(0),
            Some(AttributeValue::N(head)) => head.parse().map_err(|e| corrupt("feed head", e)),
            Some(_) => Err(corrupt("feed head", "not a number")),
        }
    }

    /// Appends at the next position of `project`'s feed: `build(position)`
    /// gives the transaction (entry, row, feed update, then the rest).
    async fn append_fed(
        &self,
        project: &ProjectId,
        build: impl Fn(u64) -> StoreResult<Vec<TransactWriteItem>>,
    ) -> StoreResult<u64> {
        for attempt in 0..FEED_ATTEMPTS {
            let position = self.feed_head(project).await? + 1;
            match self.transact(build(position)?).await {
                Ok(()) => return Ok(position),
                Err(Lost::Feed) => tokio::time::sleep(feed_backoff(attempt)).await,
                Err(Lost::Race) => return Err(StoreError::Conflict),
                Err(Lost::Failed(e)) => return Err(e),
            }
        }
        Err(StoreError::unavailable(format!(
            "project {project}: lost the race for a feed position {FEED_ATTEMPTS} times"
        )))
    }

    async fn get_row(&self, pk: String) -> StoreResult<Option<Row>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.projects)
            .key("pk", s(pk))
            .key("sk", s("row"))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(output.item)
    }

    async fn log(&self, stream: String) -> StoreResult<Vec<Row>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.tables.project_log)
            .key_condition_expression("#stream = :s")
            .expression_attribute_names("#stream", "stream")
            .expression_attribute_values(":s", s(stream))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut rows = Vec::new();
        while let Some(row) = pages.next().await {
            rows.push(row.map_err(store_error)?);
        }
        Ok(rows)
    }

    /// The projects named by `ids`, live ones only, in the order given.
    async fn live_projects(&self, ids: Vec<ProjectId>) -> StoreResult<Vec<Project>> {
        let mut projects = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(project) = self.get_project(&id).await?
                && !project.deleted
            {
                projects.push(project);
            }
        }
        Ok(projects)
    }

    /// Reads one project's items for a page (see [`Source`]).
    async fn source(&self, project: &ProjectId, query: &ItemQuery) -> StoreResult<Source> {
        let sort = query.sort;
        // Undated items come last in either direction; descending by due
        // date reads the dated ones, then the undated ones.
        let phases: Vec<Option<&str>> = match sort.key {
            SortKey::DueDate if sort.descending => match query.after.map(|p| p.value) {
                Some(Value::Due(None)) => vec![Some("1#")],
                _ => vec![Some("0#"), Some("1#")],
            },
            _ => vec![None],
        };
        let (index, attribute) = match sort.key {
            SortKey::CreatedAt => (ITEMS_BY_CREATED, "created_key"),
            SortKey::Status => (ITEMS_BY_STATUS, "status_key"),
            SortKey::DueDate => (ITEMS_BY_DUE, "due_key"),
        };
        let (filter, mut values) = filter_expression(query);
        values.insert(":p".to_owned(), s(project.to_string()));
        let mut items = Vec::new();
        let (mut read, mut read_units) = (0, 0.0);
        for (phase, prefix) in phases.iter().enumerate() {
            let mut start = match (phase, &query.after) {
                (0, Some(after)) => Some(start_key(project, after)),
                _ => None,
            };
            let mut condition = "item_project = :p".to_owned();
            let mut values = values.clone();
            if let Some(prefix) = prefix {
                condition.push_str(&format!(" AND begins_with({attribute}, :prefix)"));
                values.insert(":prefix".to_owned(), s(*prefix));
            }
            loop {
                if read >= self.read_budget || items.len() > query.limit {
                    break;
                }
                let output = self
                    .client
                    .query()
                    .table_name(&self.tables.projects)
                    .index_name(index)
                    .key_condition_expression(&condition)
                    .set_filter_expression(filter.clone())
                    .set_expression_attribute_values(Some(values.clone()))
                    .scan_index_forward(!sort.descending)
                    .set_exclusive_start_key(start.take())
                    .limit((self.read_budget - read).min(query.limit * 4 + 10) as i32)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(store_error)?;
                read += output.scanned_count() as usize;
                read_units += output
                    .consumed_capacity()
                    .and_then(|c| c.capacity_units())
                    .unwrap_or(0.0);
                for row in output.items() {
                    let item: Item = from_row("item", row, "row")?;
                    items.push((sort.position(&item), item));
                }
                match output.last_evaluated_key {
                    // The key names the index keys of the last item read.
                    Some(key) if read >= self.read_budget && items.len() <= query.limit => {
                        return Ok(Source {
                            items,
                            stopped: Some(position_of(sort.key, sort.descending, &key)?),
                            read_units,
                        });
                    }
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
        }
        Ok(Source {
            items,
            stopped: None,
            read_units,
        })
    }
}

/// The FilterExpression of a listing's filters, with its values.
fn filter_expression(query: &ItemQuery) -> (Option<String>, Row) {
    let mut clauses = Vec::new();
    let mut values = HashMap::new();
    if let Some(statuses) = &query.filter.statuses {
        let names: Vec<String> = statuses
            .iter()
            .enumerate()
            .map(|(i, status)| {
                values.insert(format!(":s{i}"), n(status_rank(*status)));
                format!(":s{i}")
            })
            .collect();
        clauses.push(format!("status_rank IN ({})", names.join(", ")));
    }
    if let Some(due) = query.filter.due {
        values.insert(":today".to_owned(), s(query.today.to_string()));
        clauses.push(match due {
            Due::Overdue => {
                values.insert(
                    ":completed".to_owned(),
                    n(status_rank(ItemStatus::Completed)),
                );
                "due_date < :today AND status_rank <> :completed".to_owned()
            }
            Due::Today => "due_date = :today".to_owned(),
            Due::Future => "due_date > :today".to_owned(),
        });
    }
    match &query.filter.assignee {
        None => {}
        Some(Assignee::Nobody) => clauses.push("attribute_not_exists(assignee)".to_owned()),
        Some(Assignee::Named(name)) => {
            values.insert(":assignee".to_owned(), s(name.as_str()));
            clauses.push("assignee = :assignee".to_owned());
        }
    }
    ((!clauses.is_empty()).then(|| clauses.join(" AND ")), values)
}

impl DynamoStore {
    /// The membership rows to add and remove when a project's members go
    /// from `before` to `after`.
    fn membership_changes(
        &self,
        project: &Project,
        before: &HashSet<UserId>,
        after: &HashSet<UserId>,
    ) -> StoreResult<Vec<TransactWriteItem>> {
        let mut items = Vec::new();
        for user in after.difference(before) {
            let put = Put::builder()
                .table_name(&self.tables.projects)
                .set_item(Some(HashMap::from([
                    ("pk".to_owned(), s(member_key(user))),
                    ("sk".to_owned(), s(project_key(&project.id))),
                    ("project_id".to_owned(), s(project.id.to_string())),
                ])))
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for user in before.difference(after) {
            let delete = Delete::builder()
                .table_name(&self.tables.projects)
                .key("pk", s(member_key(user)))
                .key("sk", s(project_key(&project.id)))
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        Ok(items)
    }
}

#[async_trait]
impl ProjectStore for DynamoStore {
    async fn append_project(&self, entry: &ProjectEntry, project: &Project) -> StoreResult<u64> {
        let before = match self.get_row(project_key(&project.id)).await? {
            Some(row) => memberships(&from_row::<Project>("project", &row, "row")?),
            None => HashSet::new(),
        };
        let after = memberships(project);
        self.append_fed(&project.id, |position| {
            let mut items = vec![
                log_put(
                    &self.tables.project_log,
                    project_key(&entry.stream),
                    entry.seq,
                    json(entry),
                    (&project.id, position),
                )?,
                row_put(&self.tables.projects, project_row(project), entry.seq)?,
                feed_update(&self.tables.projects, &project.id, position)?,
            ];
            items.extend(self.membership_changes(project, &before, &after)?);
            Ok(items)
        })
        .await
    }

    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        self.get_row(project_key(id))
            .await?
            .map(|row| from_row("project", &row, "row"))
            .transpose()
    }

    async fn project_log(&self, id: &ProjectId) -> StoreResult<Vec<ProjectEntry>> {
        self.log(project_key(id))
            .await?
            .iter()
            .map(|row| from_row("project log entry", row, "entry"))
            .collect()
    }

    async fn member_projects(
        &self,
        member: &UserId,
        after: Option<&ProjectId>,
        limit: usize,
    ) -> StoreResult<Page<Project, ProjectId>> {
        let mut ids = Vec::new();
        let mut start = after.map(|id| {
            HashMap::from([
                ("pk".to_owned(), s(member_key(member))),
                ("sk".to_owned(), s(project_key(id))),
            ])
        });
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.tables.projects)
                .key_condition_expression("pk = :m")
                .expression_attribute_values(":m", s(member_key(member)))
                .set_exclusive_start_key(start.take())
                .limit((limit + 1 - ids.len()) as i32)
                .send()
                .await
                .map_err(store_error)?;
            for row in output.items() {
                let Some(AttributeValue::S(id)) = row.get("project_id") else {
                    return Err(corrupt("membership", "no project_id"));
                };
                ids.push(ProjectId::parse(id).map_err(|e| corrupt("membership", e))?);
            }
            match output.last_evaluated_key {
                Some(key) if ids.len() <= limit => start = Some(key),
                _ => break,
            }
        }
        let page = Page::from_extra(ids, limit, |id| *id);
        Ok(Page {
            items: self.live_projects(page.items).await?,
            next: page.next,
        })
    }

    async fn all_projects(
        &self,
        after: Option<&ProjectId>,
        limit: usize,
    ) -> StoreResult<Page<Project, ProjectId>> {
        let start = after.map(|id| {
            HashMap::from([
                ("live".to_owned(), s("project")),
                ("pk".to_owned(), s(project_key(id))),
                ("sk".to_owned(), s("row")),
            ])
        });
        let output = self
            .client
            .query()
            .table_name(&self.tables.projects)
            .index_name(PROJECTS_LIVE)
            .key_condition_expression("live = :l")
            .expression_attribute_values(":l", s("project"))
            .set_exclusive_start_key(start)
            .limit(limit as i32 + 1)
            .send()
            .await
            .map_err(store_error)?;
        let projects: Vec<Project> = output
            .items()
            .iter()
            .map(|row| from_row("project", row, "row"))
            .collect::<StoreResult<_>>()?;
        Ok(Page::from_extra(projects, limit, |p| p.id))
    }

    async fn owned_projects(&self, owner: &Username) -> StoreResult<Vec<ProjectId>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.tables.projects)
            .index_name(PROJECTS_BY_OWNER)
            .key_condition_expression("owner_live = :o")
            .expression_attribute_values(":o", s(owner.as_str()))
            .into_paginator()
            .items()
            .send();
        let mut ids = Vec::new();
        while let Some(row) = pages.next().await {
            let project: Project = from_row("project", &row.map_err(store_error)?, "row")?;
            ids.push(project.id);
        }
        ids.sort();
        Ok(ids)
    }

    async fn append_item(&self, entry: &ItemEntry, item: &Item) -> StoreResult<u64> {
        let project = &item.project_id;
        self.append_fed(project, |position| {
            Ok(vec![
                log_put(
                    &self.tables.project_log,
                    item_key(&entry.stream),
                    entry.seq,
                    json(entry),
                    (project, position),
                )?,
                row_put(&self.tables.projects, item_row(item), entry.seq)?,
                feed_update(&self.tables.projects, project, position)?,
            ])
        })
        .await
    }

    async fn feed_head(&self, project: &ProjectId) -> StoreResult<u64> {
        DynamoStore::feed_head(self, project).await
    }

    async fn project_feed(
        &self,
        project: &ProjectId,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<FeedEntry>> {
        // The feed index is eventually consistent; the head (read strongly)
        // says how many entries there must be, so a read that comes back
        // short is a lagging index, read again.
        let head = self.feed_head(project).await?;
        let wanted = (head.saturating_sub(after) as usize).min(limit);
        let mut found = Vec::new();
        for attempt in 0..FEED_ATTEMPTS {
            found = self.read_feed(project, after, limit).await?;
            if found.len() >= wanted {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10 << attempt.min(5))).await;
        }
        if found.len() < wanted {
            return Err(StoreError::unavailable(format!(
                "project {project}: the feed index is behind its head ({head})"
            )));
        }
        Ok(found)
    }

    async fn get_item(&self, id: &ItemId) -> StoreResult<Option<Item>> {
        self.get_row(item_key(id))
            .await?
            .map(|row| from_row("item", &row, "row"))
            .transpose()
    }

    async fn item_log(&self, id: &ItemId) -> StoreResult<Vec<ItemEntry>> {
        self.log(item_key(id))
            .await?
            .iter()
            .map(|row| from_row("item log entry", row, "entry"))
            .collect()
    }

    async fn list_items(&self, query: &ItemQuery) -> StoreResult<Page<Item, Position>> {
        let projects = match &query.scope {
            ItemScope::Project(id) => vec![*id],
            ItemScope::MemberOf(user) => {
                let mut ids = Vec::new();
                let mut after = None;
                loop {
                    let page = self.member_projects(user, after.as_ref(), 100).await?;
                    ids.extend(page.items.iter().map(|p| p.id));
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                ids
            }
        };
        let mut found: Vec<(Position, Item)> = Vec::new();
        let mut cut: Option<Position> = None;
        let mut read_units = 0.0;
        for project in &projects {
            let source = self.source(project, query).await?;
            read_units += source.read_units;
            found.extend(source.items);
            if let Some(stopped) = source.stopped {
                cut = Some(cut.map_or(stopped, |cut| cut.min(stopped)));
            }
        }
        // What one page costs, whatever the project's size: at most the read
        // budget's worth of items per project (docs/access-patterns.md).
        metrics::histogram!("taskgate_item_page_read_units").record(read_units);
        found.sort_by_key(|(position, _)| *position);
        // Beyond where a project stopped reading, its items are unknown:
        // the page ends there.
        if let Some(cut) = cut {
            found.retain(|(position, _)| *position <= cut);
        }
        if found.len() > query.limit {
            found.truncate(query.limit);
            let next = found.last().map(|(position, _)| *position);
            return Ok(Page {
                items: found.into_iter().map(|(_, item)| item).collect(),
                next,
            });
        }
        Ok(Page {
            items: found.into_iter().map(|(_, item)| item).collect(),
            next: cut,
        })
    }

    async fn all_logs(&self) -> StoreResult<ProjectLogs> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.tables.project_log)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut logs = ProjectLogs::default();
        while let Some(row) = pages.next().await {
            let row = row.map_err(store_error)?;
            let Some(AttributeValue::S(stream)) = row.get("stream") else {
                return Err(corrupt("log entry", "no stream"));
            };
            if stream.starts_with("project#") {
                let entry: ProjectEntry = from_row("project log entry", &row, "entry")?;
                logs.projects.entry(entry.stream).or_default().push(entry);
            } else {
                let entry: ItemEntry = from_row("item log entry", &row, "entry")?;
                logs.items.entry(entry.stream).or_default().push(entry);
            }
        }
        for log in logs.projects.values_mut() {
            log.sort_by_key(|e| e.seq);
        }
        for log in logs.items.values_mut() {
            log.sort_by_key(|e| e.seq);
        }
        Ok(logs)
    }

    async fn assigned_items(
        &self,
        project: &ProjectId,
        username: &Username,
    ) -> StoreResult<Vec<Item>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.tables.projects)
            .index_name(ITEMS_BY_ASSIGNEE)
            .key_condition_expression("assignee_key = :a")
            .expression_attribute_values(":a", s(format!("{project}#{username}")))
            .into_paginator()
            .items()
            .send();
        let mut items = Vec::new();
        while let Some(row) = pages.next().await {
            items.push(from_row("item", &row.map_err(store_error)?, "row")?);
        }
        Ok(items)
    }
}
