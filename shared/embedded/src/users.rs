//! `UserStore` on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use taskgate_domain::ports::{Page, StoreError, StoreResult, UserStore};
use taskgate_domain::user::{Email, Level, User, Username};

use crate::{EmbeddedStore, corrupt, sql};

fn to_json(user: &User) -> String {
    serde_json::to_string(user).expect("a User always serialises")
}

fn from_json(item: &str) -> StoreResult<User> {
    serde_json::from_str(item).map_err(|e| corrupt("user", e))
}

fn admin_count(tx: &rusqlite::Connection) -> StoreResult<u64> {
    let count: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM users WHERE level = 'admin'",
            [],
            |row| row.get(0),
        )
        .map_err(sql)?;
    Ok(count.unsigned_abs())
}

/// The identity, level and version of the stored user, if there is one.
/// Versions are stored as SQLite integers (i64); a version never gets near 2^63.
fn stored_state(
    tx: &rusqlite::Connection,
    username: &str,
) -> StoreResult<Option<(String, String, i64)>> {
    tx.query_row(
        "SELECT user_id, level, version FROM users WHERE username = ?1",
        [username],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .optional()
    .map_err(sql)
}

/// `EmailTaken` for a write that hit the unique e-mail index.
fn email_or(e: rusqlite::Error) -> StoreError {
    let taken = matches!(
        &e,
        rusqlite::Error::SqliteFailure(failure, Some(message))
            if failure.code == rusqlite::ErrorCode::ConstraintViolation
                && message.contains("users.email_key")
    );
    if taken {
        StoreError::EmailTaken
    } else {
        sql(e)
    }
}

fn email_key(user: &User) -> Option<String> {
    user.email.as_ref().map(Email::key)
}

#[async_trait]
impl UserStore for EmbeddedStore {
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        let user = user.clone();
        self.with_conn(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT INTO users (username, user_id, level, version, item, email_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (username) DO NOTHING",
                    params![
                        user.username.as_str(),
                        user.user_id.to_string(),
                        user.level.as_str(),
                        user.version as i64,
                        to_json(&user),
                        email_key(&user)
                    ],
                )
                .map_err(email_or)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists);
            }
            Ok(())
        })
        .await
    }

    async fn get_user(&self, username: &Username) -> StoreResult<Option<User>> {
        let username = username.clone();
        self.with_reader(move |conn| {
            let item: Option<String> = conn
                .query_row(
                    "SELECT item FROM users WHERE username = ?1",
                    [username.as_str()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            item.as_deref().map(from_json).transpose()
        })
        .await
    }

    async fn get_user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        let key = email.key();
        self.with_reader(move |conn| {
            let item: Option<String> = conn
                .query_row(
                    "SELECT item FROM users WHERE email_key = ?1",
                    [key],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            item.as_deref().map(from_json).transpose()
        })
        .await
    }

    async fn list_users(
        &self,
        after: Option<&Username>,
        limit: usize,
    ) -> StoreResult<Page<User, Username>> {
        let after = after.map(|u| u.as_str().to_owned()).unwrap_or_default();
        self.with_reader(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT item FROM users WHERE username > ?1 ORDER BY username LIMIT ?2",
                )
                .map_err(sql)?;
            // One extra row tells whether another page exists.
            let rows = statement
                .query_map(params![after, limit as i64 + 1], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(sql)?;
            let mut items = Vec::with_capacity(limit + 1);
            for row in rows {
                items.push(from_json(&row.map_err(sql)?)?);
            }
            Ok(Page::from_extra(items, limit, |u| u.username.clone()))
        })
        .await
    }

    async fn update_user(&self, current: &User, next: &User) -> StoreResult<()> {
        let (current, next) = (current.clone(), next.clone());
        let (sessions, username) = (self.sessions.clone(), next.username.clone());
        let forget = move || sessions.forget(|_, user| user.username == username);
        let write = move |conn: &mut rusqlite::Connection| {
            let expected = (
                current.user_id.to_string(),
                current.level.as_str().to_owned(),
                current.version as i64,
            );
            if stored_state(conn, current.username.as_str())? != Some(expected) {
                return Err(StoreError::Conflict);
            }
            if current.is_admin() && next.level != Level::Admin && admin_count(conn)? <= 1 {
                return Err(StoreError::LastAdmin);
            }
            conn.execute(
                "UPDATE users SET level = ?2, version = ?3, item = ?4, email_key = ?5
                 WHERE username = ?1",
                params![
                    next.username.as_str(),
                    next.level.as_str(),
                    next.version as i64,
                    to_json(&next),
                    email_key(&next)
                ],
            )
            .map_err(email_or)?;
            Ok(())
        };
        self.with_conn_then(write, forget).await
    }

    async fn delete_user(&self, user: &User) -> StoreResult<()> {
        let user = user.clone();
        let (sessions, username) = (self.sessions.clone(), user.username.clone());
        let forget = move || sessions.forget(|_, cached| cached.username == username);
        let write = move |conn: &mut rusqlite::Connection| {
            match stored_state(conn, user.username.as_str())? {
                Some((user_id, level, _))
                    if user_id == user.user_id.to_string() && level == user.level.as_str() => {}
                _ => return Err(StoreError::Conflict),
            }
            if user.is_admin() && admin_count(conn)? <= 1 {
                return Err(StoreError::LastAdmin);
            }
            conn.execute(
                "DELETE FROM users WHERE username = ?1",
                [user.username.as_str()],
            )
            .map_err(sql)?;
            Ok(())
        };
        self.with_conn_then(write, forget).await
    }

    async fn count_admins(&self) -> StoreResult<u64> {
        self.with_reader(|conn| {
            let tx = conn.savepoint().map_err(sql)?;
            admin_count(&tx)
        })
        .await
    }
}
