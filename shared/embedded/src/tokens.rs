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
///
/// "Now" for the purge is the issue time of the token being inserted: the
/// issuer's clock (injected, so tests may run at any date), not this
/// machine's. A test whose clock was fixed days back lost its fresh tokens
/// to a purge by the system clock.
const PURGE_AFTER_SECONDS: i64 = 24 * 60 * 60;

#[async_trait]
impl TokenStore for EmbeddedStore {
    async fn insert_token(&self, token: &TokenRecord) -> StoreResult<()> {
        let token = token.clone();
        self.with_conn(move |conn| {
            let cutoff = token.issued_at.unix_timestamp() - PURGE_AFTER_SECONDS;
            conn.execute("DELETE FROM tokens WHERE expires_at < ?1", [cutoff])
                .map_err(sql)?;
            insert_new(
                conn,
                "INSERT INTO tokens (jti, username, expires_at, item) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (jti) DO NOTHING",
                params![
                    token.jti.to_string(),
                    token.username.as_str(),
                    token.expires_at.unix_timestamp(),
                    serde_json::to_string(&token).expect("a TokenRecord always serialises"),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_token(&self, jti: &TokenId) -> StoreResult<Option<TokenRecord>> {
        let jti = jti.to_string();
        self.with_reader(move |conn| {
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
        let sessions = self.sessions.clone();
        let deleted = jti.clone();
        self.with_conn_then(
            move |conn| {
                conn.execute("DELETE FROM tokens WHERE jti = ?1", [&jti])
                    .map_err(sql)?;
                Ok(())
            },
            move || sessions.forget(|key, _| key == deleted),
        )
        .await
    }

    async fn delete_user_tokens(
        &self,
        username: &Username,
        keep: Option<&TokenId>,
    ) -> StoreResult<usize> {
        let username = username.as_str().to_owned();
        let keep = keep.map(|jti| jti.to_string()).unwrap_or_default();
        let sessions = self.sessions.clone();
        let (name, kept) = (username.clone(), keep.clone());
        self.with_conn_then(
            move |conn| {
                conn.execute(
                    "DELETE FROM tokens WHERE username = ?1 AND jti <> ?2",
                    params![username, keep],
                )
                .map_err(sql)
            },
            move || sessions.forget(|key, user| user.username.as_str() == name && key != kept),
        )
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
        if let Some((token, user)) = self.sessions.get(&jti, &username) {
            return Ok((Some(token), Some(user)));
        }
        let generation = self.sessions.generation();
        let sessions = self.sessions.clone();
        self.with_reader(move |conn| {
            // One read transaction, so token and user are seen at one instant.
            let tx = conn.savepoint().map_err(sql)?;
            let token: Option<String> = tx
                .prepare_cached("SELECT item FROM tokens WHERE jti = ?1")
                .and_then(|mut s| s.query_row([&jti], |row| row.get(0)).optional())
                .map_err(sql)?;
            let user: Option<String> = tx
                .prepare_cached("SELECT item FROM users WHERE username = ?1")
                .and_then(|mut s| s.query_row([&username], |row| row.get(0)).optional())
                .map_err(sql)?;
            let token: Option<TokenRecord> = token
                .map(|t| serde_json::from_str(&t).map_err(|e| corrupt("token", e)))
                .transpose()?;
            let user: Option<User> = user
                .map(|u| serde_json::from_str(&u).map_err(|e| corrupt("user", e)))
                .transpose()?;
            // Only a token's own user makes a session worth keeping (a
            // forged pairing is refused by the caller anyway).
            if let (Some(token), Some(user)) = (&token, &user)
                && token.username == user.username
            {
                sessions.keep(generation, jti, token, user);
            }
            Ok((token, user))
        })
        .await
    }
}

/// The sessions (token and user) read lately, by token id: every
/// authenticated request loads one, most of them the same few. Every write
/// of this store that revokes a token or changes or deletes a user drops
/// the entries it affects once it is committed, before it returns (even to
/// a caller that gave up), and bumps a generation, so a read that raced
/// with it is not kept: a revocation takes effect at once.
/// Entries live [`SESSION_TTL`] at most, which bounds how long a change made
/// by another process on the same file (none of `taskgate`'s tools revoke
/// sessions) can go unseen.
type Cached = (TokenRecord, User, std::time::Instant);

#[derive(Default)]
pub(crate) struct SessionCache {
    /// By token id. A hit must also be for the username asked about: a
    /// forged token may pair a real id with another name, and must not meet
    /// (or replace for good) the real session.
    entries: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
    generation: std::sync::atomic::AtomicU64,
}

/// How long a cached session is trusted without reading it again.
const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Most sessions kept; past it the cache starts over.
const MAX_SESSIONS: usize = 100_000;

impl SessionCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Cached>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, jti: &str, username: &str) -> Option<(TokenRecord, User)> {
        let entries = self.entries();
        let (token, user, at) = entries.get(jti)?;
        (user.username.as_str() == username && at.elapsed() < SESSION_TTL)
            .then(|| (token.clone(), user.clone()))
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Keeps a session read at `generation`, unless something was revoked
    /// or changed since.
    fn keep(&self, generation: u64, jti: String, token: &TokenRecord, user: &User) {
        let mut entries = self.entries();
        if self.generation() != generation {
            return;
        }
        if entries.len() >= MAX_SESSIONS {
            entries.clear();
        }
        entries.insert(
            jti,
            (token.clone(), user.clone(), std::time::Instant::now()),
        );
    }

    /// Drops the sessions `affected` says (by token id and user).
    pub(crate) fn forget(&self, affected: impl Fn(&str, &User) -> bool) {
        let mut entries = self.entries();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        entries.retain(|jti, (_, user, _)| !affected(jti, user));
    }
}

#[cfg(test)]
mod tests {
    use taskgate_domain::token::TokenRecord;
    use taskgate_domain::user::{UserId, Username};
    use time::{Duration, OffsetDateTime, macros::datetime};

    use super::*;

    fn token(issued_at: OffsetDateTime, ttl: Duration) -> TokenRecord {
        TokenRecord {
            jti: TokenId::new(),
            username: Username::parse("alice").unwrap(),
            user_id: UserId::new(),
            issued_at,
            expires_at: issued_at + ttl,
        }
    }

    /// The purge goes by the issuer's clock: tokens issued on a clock set
    /// long ago stay while they are valid by that clock, whatever the date
    /// on this machine; tokens expired a day before the newest issue go.
    #[tokio::test]
    async fn the_purge_goes_by_the_issuers_clock_not_the_machines() {
        let store = EmbeddedStore::in_memory().unwrap();
        let then = datetime!(2020-01-01 12:00 UTC);
        let valid = token(then, Duration::hours(1));
        store.insert_token(&valid).await.unwrap();
        let stale = token(then - Duration::days(3), Duration::hours(1));
        store.insert_token(&stale).await.unwrap();
        // Another token issued on the same (old) clock purges what expired
        // more than a day before it, and nothing else.
        store
            .insert_token(&token(then, Duration::hours(1)))
            .await
            .unwrap();
        assert_eq!(store.get_token(&valid.jti).await.unwrap(), Some(valid));
        assert_eq!(store.get_token(&stale.jti).await.unwrap(), None);
    }
}
