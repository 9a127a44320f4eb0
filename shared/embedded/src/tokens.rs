//! `TokenStore` and `SessionStore` on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use taskgate_domain::ports::{SessionStore, StoreResult, TokenStore};
use taskgate_domain::token::{TokenId, TokenRecord};
use taskgate_domain::user::{User, Username};

use crate::{EmbeddedStore, corrupt, insert_new, sql};

/// Expired records are purged this long after expiry, the way DynamoDB's TTL
/// deletes them some time after. Until then `get_token` still returns them
/// and the caller's expiry check refuses them.
const PURGE_AFTER_SECONDS: i64 = 24 * 60 * 60;

#[async_trait]
impl TokenStore for EmbeddedStore {
    async fn insert_token(&self, token: &TokenRecord) -> StoreResult<()> {
        let token = token.clone();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sql)?;
            let cutoff = time::OffsetDateTime::now_utc().unix_timestamp() - PURGE_AFTER_SECONDS;
            tx.execute("DELETE FROM tokens WHERE expires_at < ?1", [cutoff])
                .map_err(sql)?;
            insert_new(
                &tx,
                "INSERT INTO tokens (jti, username, expires_at, item) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (jti) DO NOTHING",
                params![
                    token.jti.to_string(),
                    token.username.as_str(),
                    token.expires_at.unix_timestamp(),
                    serde_json::to_string(&token).expect("a TokenRecord always serialises"),
                ],
            )?;
            tx.commit().map_err(sql)
        })
        .await
    }

    async fn get_token(&self, jti: &TokenId) -> StoreResult<Option<TokenRecord>> {
        let jti = jti.to_string();
        self.with_conn(move |conn| {
            let item: Option<String> = conn
                .query_row("SELECT item FROM tokens WHERE jti = ?1", [jti], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(sql)?;
            item.map(|item| serde_json::from_str(&item).map_err(|e| corrupt("token", e)))
                .transpose()
        })
        .await
    }

    async fn delete_token(&self, jti: &TokenId) -> StoreResult<()> {
        let jti = jti.to_string();
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM tokens WHERE jti = ?1", [jti])
                .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn delete_user_tokens(
        &self,
        username: &Username,
        keep: Option<&TokenId>,
    ) -> StoreResult<usize> {
        let username = username.as_str().to_owned();
        let keep = keep.map(|jti| jti.to_string()).unwrap_or_default();
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM tokens WHERE username = ?1 AND jti <> ?2",
                params![username, keep],
            )
            .map_err(sql)
        })
        .await
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn load_session(
        &self,
        jti: &TokenId,
        username: &Username,
    ) -> StoreResult<(Option<TokenRecord>, Option<User>)> {
        let (jti, username) = (jti.to_string(), username.as_str().to_owned());
        self.with_conn(move |conn| {
            // One read transaction, so token and user are seen at one instant.
            let tx = conn.transaction().map_err(sql)?;
            let token: Option<String> = tx
                .query_row("SELECT item FROM tokens WHERE jti = ?1", [&jti], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(sql)?;
            let user: Option<String> = tx
                .query_row(
                    "SELECT item FROM users WHERE username = ?1",
                    [&username],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            let token = token
                .map(|t| serde_json::from_str(&t).map_err(|e| corrupt("token", e)))
                .transpose()?;
            let user = user
                .map(|u| serde_json::from_str(&u).map_err(|e| corrupt("user", e)))
                .transpose()?;
            Ok((token, user))
        })
        .await
    }
}
