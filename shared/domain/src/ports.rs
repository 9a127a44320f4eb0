//! Storage ports: the narrow traits the adapters implement.
//!
//! Two adapters exist, the embedded store (`taskgate-embedded`) and DynamoDB
//! (`taskgate-aws`); one contract test suite (`tests/e2e/store_contract.rs`)
//! holds both to the behaviour described on each method.

use async_trait::async_trait;

use crate::token::{TokenId, TokenRecord};
use crate::user::{User, Username};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create found the key already taken.
    #[error("an item with this key already exists")]
    AlreadyExists,
    /// The item to change is gone, or changed since it was read (its
    /// version or identity no longer matches). Re-read and decide again.
    #[error("the item changed or disappeared since it was read")]
    Conflict,
    /// The change would leave no admin account.
    #[error("the last admin account cannot be removed or demoted")]
    LastAdmin,
    /// The backing service did not answer in time or refused service.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a stored item that does not parse, an unexpected reply.
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    /// Pass back as `after` to get the next page; `None` on the last page.
    pub next: Option<C>,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user. `AlreadyExists` if the username is taken.
    async fn insert_user(&self, user: &User) -> StoreResult<()>;

    /// The user with this username, if any (strongly consistent).
    async fn get_user(&self, username: &Username) -> StoreResult<Option<User>>;

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
    /// only admin.
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

/// All the ports one backend provides, as one object the HTTP layer holds.
pub trait Store: UserStore + TokenStore + SessionStore {}

impl<T: UserStore + TokenStore + SessionStore> Store for T {}
