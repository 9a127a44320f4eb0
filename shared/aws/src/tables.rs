//! Table names and the one description of every table Taskgate uses.
//!
//! `infra/template.yaml` declares the same tables for AWS; a test in
//! `tests/e2e/infra.rs` checks that its keys, indexes and TTL match
//! [`table_specs`], so the template and the code cannot drift apart.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};
use taskgate_domain::ports::{StoreError, StoreResult};

use crate::errors::{build_error, store_error};

/// The physical table names. Lambda functions get them from the SAM template;
/// the local server from the environment or these defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNames {
    pub users: String,
    pub tokens: String,
    pub task_events: String,
    pub security: String,
    pub projects: String,
    pub project_log: String,
    /// The WebSocket API's connections (AWS only: the local server keeps
    /// its connections in memory).
    pub connections: String,
    /// Files and uploads (their bytes are in the blob store).
    pub files: String,
}

impl TableNames {
    pub const USERS_ENV: &'static str = "TASKGATE_USERS_TABLE";
    pub const TOKENS_ENV: &'static str = "TASKGATE_TOKENS_TABLE";
    pub const TASK_EVENTS_ENV: &'static str = "TASKGATE_TASK_EVENTS_TABLE";
    pub const SECURITY_ENV: &'static str = "TASKGATE_SECURITY_TABLE";
    pub const PROJECTS_ENV: &'static str = "TASKGATE_PROJECTS_TABLE";
    pub const PROJECT_LOG_ENV: &'static str = "TASKGATE_PROJECT_LOG_TABLE";
    pub const CONNECTIONS_ENV: &'static str = "TASKGATE_CONNECTIONS_TABLE";
    pub const FILES_ENV: &'static str = "TASKGATE_FILES_TABLE";

    /// `<prefix>-users`, `<prefix>-tokens`, `<prefix>-task-events`,
    /// `<prefix>-security`, `<prefix>-projects`, `<prefix>-project-log`,
    /// `<prefix>-connections`, `<prefix>-files`.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            users: format!("{prefix}-users"),
            tokens: format!("{prefix}-tokens"),
            task_events: format!("{prefix}-task-events"),
            security: format!("{prefix}-security"),
            projects: format!("{prefix}-projects"),
            project_log: format!("{prefix}-project-log"),
            connections: format!("{prefix}-connections"),
            files: format!("{prefix}-files"),
        }
    }

    /// Names from the variables of [`Self::variables`] (read through
    /// `lookup`), defaulting to the `taskgate-` prefixed names.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let defaults = Self::with_prefix("taskgate");
        Self {
            users: lookup(Self::USERS_ENV).unwrap_or(defaults.users),
            tokens: lookup(Self::TOKENS_ENV).unwrap_or(defaults.tokens),
            task_events: lookup(Self::TASK_EVENTS_ENV).unwrap_or(defaults.task_events),
            security: lookup(Self::SECURITY_ENV).unwrap_or(defaults.security),
            projects: lookup(Self::PROJECTS_ENV).unwrap_or(defaults.projects),
            project_log: lookup(Self::PROJECT_LOG_ENV).unwrap_or(defaults.project_log),
            connections: lookup(Self::CONNECTIONS_ENV).unwrap_or(defaults.connections),
            files: lookup(Self::FILES_ENV).unwrap_or(defaults.files),
        }
    }

    /// Each table's variable and name (the defaults' names are those of
    /// `with_prefix("taskgate")`), for documentation and its test.
    pub fn variables(&self) -> [(&'static str, &str); 8] {
        [
            (Self::USERS_ENV, &self.users),
            (Self::TOKENS_ENV, &self.tokens),
            (Self::TASK_EVENTS_ENV, &self.task_events),
            (Self::SECURITY_ENV, &self.security),
            (Self::PROJECTS_ENV, &self.projects),
            (Self::PROJECT_LOG_ENV, &self.project_log),
            (Self::CONNECTIONS_ENV, &self.connections),
            (Self::FILES_ENV, &self.files),
        ]
    }

    /// Every table name, in the order of [`table_specs`].
    pub fn all(&self) -> [&str; 8] {
        [
            &self.users,
            &self.tokens,
            &self.task_events,
            &self.security,
            &self.projects,
            &self.project_log,
            &self.connections,
            &self.files,
        ]
    }

    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Index of the Tokens table by username, for revoking all of a user's tokens.
pub const TOKENS_BY_USERNAME: &str = "by-username";
/// Index of the TaskEvents table by owner; only `created` events carry
/// `owner_id`, so it lists each task once.
pub const TASKS_BY_OWNER: &str = "by-owner";
/// Tasks whose `created` event is written but whose `started` is not yet
/// (sparse: the `unstarted` attribute of the `created` item, one of
/// [`UNSTARTED_SHARDS`] values so that no index partition is hot; the range
/// is the task id, a UUIDv7, so ids sort by creation time). The scheduled
/// sweep (taskgate_lambda::reconcile::sweep) starts or fails what stays in it.
pub const TASKS_UNSTARTED: &str = "unstarted";
/// How many partitions the [`TASKS_UNSTARTED`] index spreads its items over.
pub const UNSTARTED_SHARDS: u8 = 8;

/// Indexes of the Projects table (docs/access-patterns.md). Each key
/// attribute is set only on the rows the index serves (live ones), so the
/// indexes are sparse.
pub const PROJECTS_BY_OWNER: &str = "by-owner";
pub const PROJECTS_LIVE: &str = "live";
pub const ITEMS_BY_CREATED: &str = "items-by-created";
pub const ITEMS_BY_STATUS: &str = "items-by-status";
pub const ITEMS_BY_DUE: &str = "items-by-due";
pub const ITEMS_BY_ASSIGNEE: &str = "items-by-assignee";
/// On the ProjectLog table: every entry of a project's logs by its position
/// in the project's feed (`feed_project`, `feed`).
pub const PROJECT_FEED: &str = "project-feed";
pub const FEED_KEY: &str = "feed_project";
pub const FEED_POSITION: &str = "feed";
/// On the Files table: a user's files, newest first.
pub const FILES_BY_OWNER: &str = "by-owner";
/// On the Files table: unfinished uploads by expiry (sparse).
pub const UPLOADS_BY_EXPIRY: &str = "uploads-by-expiry";
/// On the Connections table: subscriptions by what they listen to.
pub const CONNECTIONS_BY_TOPIC: &str = "by-topic";
/// On the Connections table: connections by user (to bound them).
pub const CONNECTIONS_BY_USER: &str = "by-user";

/// A key attribute: its name and scalar type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAttribute {
    pub name: &'static str,
    pub kind: ScalarAttributeType,
}

const fn string_key(name: &'static str) -> KeyAttribute {
    KeyAttribute {
        name,
        kind: ScalarAttributeType::S,
    }
}

const fn number_key(name: &'static str) -> KeyAttribute {
    KeyAttribute {
        name,
        kind: ScalarAttributeType::N,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: &'static str,
    pub hash_key: KeyAttribute,
    pub range_key: Option<KeyAttribute>,
    pub projection: ProjectionType,
}

/// Everything about a table that the code depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    /// Logical name, as in the SAM template (`UsersTable`).
    pub logical_name: &'static str,
    pub name: String,
    pub hash_key: KeyAttribute,
    pub range_key: Option<KeyAttribute>,
    pub indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<&'static str>,
    /// Whether the table has a stream (new images), which the real-time
    /// fan-out reads on AWS.
    pub stream: bool,
}

pub fn table_specs(names: &TableNames) -> Vec<TableSpec> {
    vec![
        TableSpec {
            logical_name: "UsersTable",
            name: names.users.clone(),
            hash_key: string_key("username"),
            range_key: None,
            indexes: vec![],
            ttl_attribute: None,
            stream: false,
        },
        TableSpec {
            logical_name: "TokensTable",
            name: names.tokens.clone(),
            hash_key: string_key("jti"),
            range_key: None,
            indexes: vec![IndexSpec {
                name: TOKENS_BY_USERNAME,
                hash_key: string_key("username"),
                range_key: None,
                projection: ProjectionType::KeysOnly,
            }],
            ttl_attribute: Some("expires_at"),
            stream: false,
        },
        TableSpec {
            logical_name: "TaskEventsTable",
            name: names.task_events.clone(),
            hash_key: string_key("task_id"),
            range_key: Some(number_key("seq")),
            indexes: vec![
                IndexSpec {
                    name: TASKS_BY_OWNER,
                    hash_key: string_key("owner_id"),
                    range_key: Some(string_key("task_id")),
                    projection: ProjectionType::KeysOnly,
                },
                IndexSpec {
                    name: TASKS_UNSTARTED,
                    hash_key: string_key("unstarted"),
                    range_key: Some(string_key("task_id")),
                    projection: ProjectionType::KeysOnly,
                },
            ],
            ttl_attribute: None,
            stream: true,
        },
        // The security log (`pk` = "audit", `sk` = event id) and the
        // login-attempt counters (`pk` = "login#<key>", `sk` = "-").
        TableSpec {
            logical_name: "SecurityTable",
            name: names.security.clone(),
            hash_key: string_key("pk"),
            range_key: Some(string_key("sk")),
            indexes: vec![],
            ttl_attribute: Some("expires_at"),
            stream: false,
        },
        // Project rows (`pk` = "project#<id>", `sk` = "row"), membership
        // rows (`pk` = "member#<user id>", `sk` = "project#<id>") and item
        // rows (`pk` = "item#<id>", `sk` = "row"): every current-state row
        // of projects, with the indexes their listings query.
        TableSpec {
            logical_name: "ProjectsTable",
            name: names.projects.clone(),
            hash_key: string_key("pk"),
            range_key: Some(string_key("sk")),
            indexes: vec![
                index(PROJECTS_BY_OWNER, "owner_live", "pk"),
                index(PROJECTS_LIVE, "live", "pk"),
                index(ITEMS_BY_CREATED, "item_project", "created_key"),
                index(ITEMS_BY_STATUS, "item_project", "status_key"),
                index(ITEMS_BY_DUE, "item_project", "due_key"),
                index(ITEMS_BY_ASSIGNEE, "assignee_key", "created_key"),
            ],
            ttl_attribute: None,
            stream: false,
        },
        // The logs of projects and items: `stream` = "project#<id>" or
        // "item#<id>", `seq` from 1; append-only (conditional puts). Each
        // entry also has its position in its project's feed (the head is
        // the Projects table's `pk` = "project#<id>", `sk` = "feed" row).
        TableSpec {
            logical_name: "ProjectLogTable",
            name: names.project_log.clone(),
            hash_key: string_key("stream"),
            range_key: Some(number_key("seq")),
            indexes: vec![IndexSpec {
                name: PROJECT_FEED,
                hash_key: string_key(FEED_KEY),
                range_key: Some(number_key(FEED_POSITION)),
                projection: ProjectionType::All,
            }],
            ttl_attribute: None,
            stream: true,
        },
        // The WebSocket API's connections (`topic` = "#") and their
        // subscriptions (`topic` = the topic), see `connections`.
        TableSpec {
            logical_name: "ConnectionsTable",
            name: names.connections.clone(),
            hash_key: string_key("connection"),
            range_key: Some(string_key("topic")),
            indexes: vec![
                IndexSpec {
                    name: CONNECTIONS_BY_TOPIC,
                    hash_key: string_key("topic_key"),
                    range_key: Some(string_key("connection")),
                    projection: ProjectionType::All,
                },
                IndexSpec {
                    name: CONNECTIONS_BY_USER,
                    hash_key: string_key("user_key"),
                    range_key: Some(string_key("connection")),
                    projection: ProjectionType::KeysOnly,
                },
            ],
            ttl_attribute: Some("expires_at"),
            stream: false,
        },
        // Files (`file_id`) and each owner's usage (`usage#<user id>`).
        TableSpec {
            logical_name: "FilesTable",
            name: names.files.clone(),
            hash_key: string_key("file_id"),
            range_key: None,
            indexes: vec![
                index(FILES_BY_OWNER, "owner_id", "file_id"),
                index(UPLOADS_BY_EXPIRY, "uploading", "expires_at"),
            ],
            ttl_attribute: None,
            stream: false,
        },
    ]
}

const fn index(name: &'static str, hash: &'static str, range: &'static str) -> IndexSpec {
    IndexSpec {
        name,
        hash_key: string_key(hash),
        range_key: Some(string_key(range)),
        projection: ProjectionType::All,
    }
}

/// Creates every table that does not exist yet (on-demand capacity, TTL where
/// the spec has one) and waits until all are active. Safe to run from several
/// processes at once.
pub async fn ensure_tables(client: &Client, names: &TableNames) -> StoreResult<()> {
    for spec in table_specs(names) {
        ensure_table(client, &spec).await?;
    }
    Ok(())
}

async fn ensure_table(client: &Client, spec: &TableSpec) -> StoreResult<()> {
    match client.describe_table().table_name(&spec.name).send().await {
        Ok(described) => {
            wait_until_active(client, &spec.name).await?;
            let existing: Vec<&str> = described
                .table()
                .map(|t| t.global_secondary_indexes())
                .unwrap_or_default()
                .iter()
                .filter_map(|i| i.index_name())
                .collect();
            for index in spec.indexes.iter().filter(|i| !existing.contains(&i.name)) {
                add_index(client, spec, index).await?;
            }
            return Ok(());
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(e) => return Err(store_error(e)),
    }
    tracing::info!(table = %spec.name, "creating DynamoDB table");
    let created = client
        .create_table()
        .table_name(&spec.name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attribute_definitions(spec)?))
        .set_key_schema(Some(key_schema(&spec.hash_key, spec.range_key.as_ref())?))
        .set_global_secondary_indexes(global_indexes(spec)?)
        .set_stream_specification(stream_specification(spec))
        .send()
        .await;
    match created {
        Ok(_) => {}
        // Another process created it between our describe and create.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(e) => return Err(store_error(e)),
    }
    wait_until_active(client, &spec.name).await?;
    if let Some(attribute) = spec.ttl_attribute {
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(build_error)?;
        if let Err(e) = client
            .update_time_to_live()
            .table_name(&spec.name)
            .time_to_live_specification(ttl)
            .send()
            .await
        {
            // TTL only purges expired tokens early; expiry itself is checked on
            // every read, so a table without it still behaves correctly.
            tracing::warn!(table = %spec.name, error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "could not enable TTL");
        }
    }
    Ok(())
}

fn stream_specification(spec: &TableSpec) -> Option<StreamSpecification> {
    spec.stream.then(|| {
        StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::NewImage)
            .build()
            .expect("the stream specification is complete")
    })
}

/// Adds an index that a newer version introduced to a table made by an
/// older one (DynamoDB backfills it), and waits until it serves.
async fn add_index(client: &Client, spec: &TableSpec, index: &IndexSpec) -> StoreResult<()> {
    tracing::info!(table = %spec.name, index = index.name, "adding a DynamoDB index");
    let create = CreateGlobalSecondaryIndexAction::builder()
        .index_name(index.name)
        .set_key_schema(Some(key_schema(&index.hash_key, index.range_key.as_ref())?))
        .projection(
            Projection::builder()
                .projection_type(index.projection.clone())
                .build(),
        )
        .build()
        .map_err(build_error)?;
    let added = client
        .update_table()
        .table_name(&spec.name)
        .set_attribute_definitions(Some(attribute_definitions(spec)?))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder().create(create).build(),
        )
        .send()
        .await;
    match added {
        Ok(_) => {}
        // Another process is adding it.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(e) => return Err(store_error(e)),
    }
    for _ in 0..600 {
        let described = client
            .describe_table()
            .table_name(&spec.name)
            .send()
            .await
            .map_err(store_error)?;
        let active = described
            .table()
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .any(|i| {
                i.index_name() == Some(index.name) && i.index_status() == Some(&IndexStatus::Active)
            });
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(StoreError::unavailable(format!(
        "index {} of table {} did not become active within two minutes",
        index.name, spec.name
    )))
}

async fn wait_until_active(client: &Client, table: &str) -> StoreResult<()> {
    for _ in 0..300 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(store_error)?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(StoreError::unavailable(format!(
        "table {table} did not become active within a minute"
    )))
}

fn attribute_definitions(spec: &TableSpec) -> StoreResult<Vec<AttributeDefinition>> {
    let mut keys = vec![&spec.hash_key];
    keys.extend(spec.range_key.as_ref());
    for index in &spec.indexes {
        keys.push(&index.hash_key);
        keys.extend(index.range_key.as_ref());
    }
    let mut definitions: Vec<AttributeDefinition> = Vec::new();
    for key in keys {
        if definitions.iter().any(|d| d.attribute_name() == key.name) {
            continue;
        }
        definitions.push(
            AttributeDefinition::builder()
                .attribute_name(key.name)
                .attribute_type(key.kind.clone())
                .build()
                .map_err(build_error)?,
        );
    }
    Ok(definitions)
}

fn key_schema(
    hash: &KeyAttribute,
    range: Option<&KeyAttribute>,
) -> StoreResult<Vec<KeySchemaElement>> {
    let mut schema = vec![
        KeySchemaElement::builder()
            .attribute_name(hash.name)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build_error)?,
    ];
    if let Some(range) = range {
        schema.push(
            KeySchemaElement::builder()
                .attribute_name(range.name)
                .key_type(KeyType::Range)
                .build()
                .map_err(build_error)?,
        );
    }
    Ok(schema)
}

fn global_indexes(spec: &TableSpec) -> StoreResult<Option<Vec<GlobalSecondaryIndex>>> {
    if spec.indexes.is_empty() {
        return Ok(None);
    }
    spec.indexes
        .iter()
        .map(|index| {
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .set_key_schema(Some(key_schema(&index.hash_key, index.range_key.as_ref())?))
                .projection(
                    Projection::builder()
                        .projection_type(index.projection.clone())
                        .build(),
                )
                .build()
                .map_err(build_error)
        })
        .collect::<StoreResult<Vec<_>>>()
        .map(Some)
}
