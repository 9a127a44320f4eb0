//! The database schema and its migrations, keyed by `PRAGMA user_version`.

use rusqlite::Connection;
use taskgate_domain::ports::{StoreError, StoreResult};

use crate::sql;

/// The schema version this build creates and upgrades to.
pub const VERSION: usize = MIGRATIONS.len();

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: users and tokens. Items are stored whole as JSON; the columns beside
    // them are the ones queries and conditions need.
    "CREATE TABLE users (
        username TEXT PRIMARY KEY,
        user_id  TEXT NOT NULL,
        level    TEXT NOT NULL CHECK (level IN ('admin', 'user')),
        version  INTEGER NOT NULL,
        item     TEXT NOT NULL
     ) STRICT;
     CREATE TABLE tokens (
        jti        TEXT PRIMARY KEY,
        username   TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        item       TEXT NOT NULL
     ) STRICT;
     CREATE INDEX tokens_by_username ON tokens (username);
     CREATE INDEX tokens_by_expiry ON tokens (expires_at);",
    // 2: the task event log. `owner_id` is set on `created` events only, so
    // the index lists each task once.
    "CREATE TABLE task_events (
        task_id  TEXT NOT NULL,
        seq      INTEGER NOT NULL,
        owner_id TEXT,
        item     TEXT NOT NULL,
        PRIMARY KEY (task_id, seq)
     ) STRICT;
     CREATE INDEX task_events_by_owner ON task_events (owner_id, task_id) WHERE owner_id IS NOT NULL;",
    // 3: the security audit log (append-only: triggers refuse changes) and
    // the login-attempt counters.
    "CREATE TABLE security_events (
        id   TEXT PRIMARY KEY,
        item TEXT NOT NULL
     ) STRICT;
     CREATE TRIGGER security_events_no_update BEFORE UPDATE ON security_events
     BEGIN SELECT RAISE(ABORT, 'the security log is append-only'); END;
     CREATE TRIGGER security_events_no_delete BEFORE DELETE ON security_events
     BEGIN SELECT RAISE(ABORT, 'the security log is append-only'); END;
     CREATE TABLE login_attempts (
        key      TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_at  TEXT NOT NULL
     ) STRICT;",
    // 4: projects, members and work items. Each has an append-only log
    // (triggers refuse changes) and a current-state row written in the same
    // transaction; the row's columns are the ones listings filter and sort
    // by, each listing served by an index (docs/access-patterns.md).
    "CREATE TABLE project_log (
        project_id TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        entry      TEXT NOT NULL,
        PRIMARY KEY (project_id, seq)
     ) STRICT;
     CREATE TRIGGER project_log_no_update BEFORE UPDATE ON project_log
     BEGIN SELECT RAISE(ABORT, 'the project log is append-only'); END;
     CREATE TRIGGER project_log_no_delete BEFORE DELETE ON project_log
     BEGIN SELECT RAISE(ABORT, 'the project log is append-only'); END;
     CREATE TABLE projects (
        project_id TEXT PRIMARY KEY,
        version    INTEGER NOT NULL,
        owner      TEXT NOT NULL,
        deleted    INTEGER NOT NULL,
        row        TEXT NOT NULL
     ) STRICT;
     CREATE INDEX projects_by_owner ON projects (owner) WHERE deleted = 0;
     CREATE INDEX projects_live ON projects (project_id) WHERE deleted = 0;
     CREATE TABLE project_members (
        project_id TEXT NOT NULL,
        username   TEXT NOT NULL,
        user_id    TEXT NOT NULL,
        PRIMARY KEY (project_id, username)
     ) STRICT;
     CREATE INDEX project_members_by_user ON project_members (user_id, project_id);
     CREATE TABLE item_log (
        item_id TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        entry   TEXT NOT NULL,
        PRIMARY KEY (item_id, seq)
     ) STRICT;
     CREATE TRIGGER item_log_no_update BEFORE UPDATE ON item_log
     BEGIN SELECT RAISE(ABORT, 'the item log is append-only'); END;
     CREATE TRIGGER item_log_no_delete BEFORE DELETE ON item_log
     BEGIN SELECT RAISE(ABORT, 'the item log is append-only'); END;
     CREATE TABLE items (
        item_id     TEXT PRIMARY KEY,
        project_id  TEXT NOT NULL,
        version     INTEGER NOT NULL,
        status_rank INTEGER NOT NULL,
        due_missing INTEGER NOT NULL,
        due_key     TEXT NOT NULL,
        assignee    TEXT,
        created_at  TEXT NOT NULL,
        deleted     INTEGER NOT NULL,
        row         TEXT NOT NULL
     ) STRICT;
     CREATE INDEX items_by_created ON items (project_id, created_at, item_id) WHERE deleted = 0;
     CREATE INDEX items_by_status ON items (project_id, status_rank, item_id) WHERE deleted = 0;
     CREATE INDEX items_by_due ON items (project_id, due_missing, due_key, item_id) WHERE deleted = 0;
     CREATE INDEX items_by_assignee ON items (assignee, project_id, due_missing, due_key, item_id) WHERE deleted = 0;
     -- E-mail addresses are unique regardless of case. Of addresses that
     -- older versions let two users share, the first user's is kept as the
     -- claim; the others keep their address but no claim.
     ALTER TABLE users ADD COLUMN email_key TEXT;
     UPDATE users SET email_key = lower(json_extract(item, '$.email'))
      WHERE rowid IN (SELECT min(rowid) FROM users WHERE json_extract(item, '$.email') IS NOT NULL
                      GROUP BY lower(json_extract(item, '$.email')));
     CREATE UNIQUE INDEX users_by_email ON users (email_key);",
    // 5: each project's feed: every entry of the project's log and of its
    // items' logs, numbered in commit order (real-time replay reads it).
    // Entries written before it existed are numbered by time.
    "CREATE TABLE project_feed (
        project_id TEXT NOT NULL,
        position   INTEGER NOT NULL,
        item_id    TEXT,
        seq        INTEGER NOT NULL,
        PRIMARY KEY (project_id, position)
     ) STRICT, WITHOUT ROWID;
     CREATE TRIGGER project_feed_no_update BEFORE UPDATE ON project_feed
     BEGIN SELECT RAISE(ABORT, 'the project feed is append-only'); END;
     CREATE TRIGGER project_feed_no_delete BEFORE DELETE ON project_feed
     BEGIN SELECT RAISE(ABORT, 'the project feed is append-only'); END;
     INSERT INTO project_feed (project_id, position, item_id, seq)
     SELECT project_id,
            row_number() OVER (PARTITION BY project_id ORDER BY at, item_id NULLS FIRST, seq),
            item_id, seq
       FROM (SELECT project_id, NULL AS item_id, seq, json_extract(entry, '$.at') AS at
               FROM project_log
             UNION ALL
             SELECT i.project_id, l.item_id, l.seq, json_extract(l.entry, '$.at')
               FROM item_log l JOIN items i USING (item_id));",
    // 6: files and uploads. The record is stored whole; the columns beside
    // it serve the quota (sum of sizes per owner), the owner's listing
    // (newest first) and the expiry of unfinished uploads.
    "CREATE TABLE files (
        file_id    TEXT PRIMARY KEY,
        owner_id   TEXT NOT NULL,
        size       INTEGER NOT NULL,
        uploading  INTEGER NOT NULL,
        expires_at TEXT,
        version    INTEGER NOT NULL,
        item       TEXT NOT NULL
     ) STRICT;
     CREATE INDEX files_by_owner ON files (owner_id, file_id);
     CREATE INDEX uploads_by_expiry ON files (expires_at) WHERE uploading = 1;",
    // 7: each owner's tasks that have not ended, counted with every
    // creation and ending (in their transactions), from the log so far.
    "CREATE TABLE active_tasks (
        owner_id TEXT PRIMARY KEY,
        active   INTEGER NOT NULL
     ) STRICT;
     INSERT INTO active_tasks (owner_id, active)
     SELECT c.owner_id, count(*) FROM task_events c
      WHERE c.owner_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM task_events t WHERE t.task_id = c.task_id
                          AND json_extract(t.item, '$.type') IN ('succeeded', 'failed', 'cancelled'))
      GROUP BY c.owner_id;",
    // 8: Idempotency-Key claims and the responses they keep, for a while.
    "CREATE TABLE idempotency (
        scope       TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        response    TEXT,
        expires_at  TEXT NOT NULL
     ) STRICT;",
    // 9: how far running tasks (exports) have got, beside the log.
    "CREATE TABLE task_progress (
        task_id  TEXT PRIMARY KEY,
        progress REAL NOT NULL
     ) STRICT;",
];

pub(crate) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    let current: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql)?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(StoreError::other(format!(
            "the database has schema version {current}, newer than this build knows ({}); \
             use a newer taskgate",
            MIGRATIONS.len()
        )));
    }
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)
            .map_err(sql)?;
    }
    tx.commit().map_err(sql)
}
