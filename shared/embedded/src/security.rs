//! `SecurityStore` on SQLite: the append-only security log and the
//! login-attempt counters.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use taskgate_domain::ports::{Page, SecurityStore, StoreError, StoreResult};
use taskgate_domain::security::{LoginAttempts, SecurityEvent};
use taskgate_domain::timestamp;

use crate::{EmbeddedStore, corrupt, insert_new, sql};

#[async_trait]
impl SecurityStore for EmbeddedStore {
    async fn login_attempts(&self, key: &str) -> StoreResult<Option<LoginAttempts>> {
        let key = key.to_owned();
        self.with_conn(move |conn| {
            let row: Option<(u32, String)> = conn
                .query_row(
                    "SELECT failures, last_at FROM login_attempts WHERE key = ?1",
                    [&key],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            row.map(|(failures, last_at)| {
                Ok(LoginAttempts {
                    failures,
                    last_at: timestamp::parse(&last_at)
                        .map_err(|e| corrupt("login attempts", e))?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn put_login_attempts(
        &self,
        key: &str,
        seen: Option<&LoginAttempts>,
        next: &LoginAttempts,
    ) -> StoreResult<()> {
        let (key, seen, next) = (key.to_owned(), seen.map(|s| s.failures), next.clone());
        self.with_conn(move |conn| {
            let last_at = timestamp::format(next.last_at);
            let written = match seen {
                None => conn.execute(
                    "INSERT INTO login_attempts (key, failures, last_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO NOTHING",
                    params![key, next.failures, last_at],
                ),
                Some(seen) => conn.execute(
                    "UPDATE login_attempts SET failures = ?2, last_at = ?3
                     WHERE key = ?1 AND failures = ?4",
                    params![key, next.failures, last_at, seen],
                ),
            }
            .map_err(sql)?;
            if written == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict)
            }
        })
        .await
    }

    async fn clear_login_attempts(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM login_attempts WHERE key = ?1", [key])
                .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn append_security_event(&self, event: &SecurityEvent) -> StoreResult<()> {
        let id = event.id.clone();
        let item = serde_json::to_string(event).expect("a SecurityEvent always serialises");
        self.with_conn(move |conn| {
            insert_new(
                conn,
                "INSERT INTO security_events (id, item) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
                params![id, item],
            )
        })
        .await
    }

    async fn security_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<SecurityEvent, String>> {
        let after = after.map(str::to_owned);
        self.with_conn(move |conn| {
            // One more than asked tells whether there is a next page.
            let mut statement = conn
                .prepare(
                    "SELECT item FROM security_events WHERE ?1 IS NULL OR id < ?1
                     ORDER BY id DESC LIMIT ?2",
                )
                .map_err(sql)?;
            let items = statement
                .query_map(params![after, limit as i64 + 1], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(sql)?
                .map(|item| {
                    let item = item.map_err(sql)?;
                    serde_json::from_str::<SecurityEvent>(&item)
                        .map_err(|e| corrupt("security event", e))
                })
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(Page::from_extra(items, limit, |e| e.id.clone()))
        })
        .await
    }
}
