//! The database schema and its migrations, keyed by `PRAGMA user_version`.

use rusqlite::Connection;
use taskgate_domain::ports::{StoreError, StoreResult};

use crate::sql;

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
