//! `UserStore` on the Users table.
//!
//! Besides one item per user (key `username`), the table holds one counter
//! item, key [`ADMINS_KEY`], with the number of admin accounts. Every write
//! that creates, removes, promotes or demotes an admin changes the counter in
//! the same transaction, and removals are conditional on `admin_count > 1`:
//! that is how "never the last admin" holds under concurrent requests.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use taskgate_domain::password::PasswordHash;
use taskgate_domain::ports::{Page, StoreError, StoreResult, UserStore};
use taskgate_domain::user::{Email, Level, Profile, User, UserId, Username};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::DynamoStore;
use crate::attr::{n, s};
use crate::errors::{build_error, condition_failed_at, condition_or, corrupt, store_error};

/// Key of the admin counter. `#` is not allowed in usernames, so it can never
/// collide with an account.
const ADMINS_KEY: &str = "#admins";
/// Items that reserve an e-mail address start with this (see `claim_key`).
const CLAIM_PREFIX: &str = "#email#";

/// A user as stored: flat strings and numbers. The profile is kept as JSON
/// text so that it reads back exactly as written.
#[derive(Serialize, Deserialize)]
struct UserItem {
    username: String,
    user_id: String,
    password_hash: String,
    level: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    version: u64,
    created_at: String,
    updated_at: String,
}

fn timestamp(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("a UTC timestamp always formats")
}

fn to_item(user: &User) -> StoreResult<HashMap<String, AttributeValue>> {
    let item = UserItem {
        username: user.username.to_string(),
        user_id: user.user_id.to_string(),
        password_hash: user.password_hash.as_str().to_owned(),
        level: user.level.as_str().to_owned(),
        email: user.email.as_ref().map(|e| e.as_str().to_owned()),
        profile: user.profile.as_ref().map(Profile::to_json),
        version: user.version,
        created_at: timestamp(user.created_at),
        updated_at: timestamp(user.updated_at),
    };
    serde_dynamo::to_item(item).map_err(build_error)
}

pub(crate) fn from_item(item: HashMap<String, AttributeValue>) -> StoreResult<User> {
    let item: UserItem = serde_dynamo::from_item(item).map_err(|e| corrupt("user", e))?;
    let bad = |e: &dyn std::fmt::Display| corrupt("user", format!("{}: {e}", item.username));
    Ok(User {
        username: Username::parse(&item.username).map_err(|e| bad(&e))?,
        user_id: UserId::parse(&item.user_id).map_err(|e| bad(&e))?,
        password_hash: PasswordHash::parse(&item.password_hash).map_err(|e| bad(&e))?,
        level: Level::parse(&item.level).map_err(|e| bad(&e))?,
        email: item
            .email
            .as_deref()
            .map(Email::parse)
            .transpose()
            .map_err(|e| bad(&e))?,
        profile: item
            .profile
            .as_deref()
            .map(|json| {
                let value = serde_json::from_str(json).map_err(|e| bad(&e))?;
                Profile::from_stored(value).map_err(|e| bad(&e))
            })
            .transpose()?,
        version: item.version,
        created_at: OffsetDateTime::parse(&item.created_at, &Rfc3339).map_err(|e| bad(&e))?,
        updated_at: OffsetDateTime::parse(&item.updated_at, &Rfc3339).map_err(|e| bad(&e))?,
    })
}

/// A conditional write of one user item, built once and sent alone or in a
/// transaction with the admin counter ([`DynamoStore::write_user`]).
enum UserWrite {
    Put(Put),
    Delete(Delete),
}

impl DynamoStore {
    pub(crate) fn user_key(username: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("username".to_owned(), s(username))])
    }

    /// Adds `delta` to the admin counter; when removing an admin, only if at
    /// least one other admin remains.
    fn admin_count_change(&self, delta: i64) -> StoreResult<TransactWriteItem> {
        let mut update = Update::builder()
            .table_name(&self.tables.users)
            .set_key(Some(Self::user_key(ADMINS_KEY)))
            .update_expression("ADD admin_count :delta")
            .expression_attribute_values(":delta", n(delta));
        if delta < 0 {
            update = update
                .condition_expression("admin_count > :one")
                .expression_attribute_values(":one", n(1));
        }
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(build_error)?)
            .build())
    }

    /// Sends one conditional write of a user item. When it changes the number
    /// of admins by `delta`, it goes in a transaction with the counter (the
    /// user write first); otherwise it goes alone, at half the cost. A failed
    /// condition on the user item is `user_condition_failed`.
    async fn write_user(
        &self,
        write: UserWrite,
        delta: i64,
        claims: Vec<TransactWriteItem>,
        user_condition_failed: StoreError,
    ) -> StoreResult<()> {
        if delta == 0 && claims.is_empty() {
            let sent = match write {
                UserWrite::Put(put) => self
                    .client
                    .put_item()
                    .table_name(put.table_name())
                    .set_item(Some(put.item().clone()))
                    .set_condition_expression(put.condition_expression().map(str::to_owned))
                    .set_expression_attribute_names(put.expression_attribute_names().cloned())
                    .set_expression_attribute_values(put.expression_attribute_values().cloned())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| condition_or(e, user_condition_failed)),
                UserWrite::Delete(delete) => self
                    .client
                    .delete_item()
                    .table_name(delete.table_name())
                    .set_key(Some(delete.key().clone()))
                    .set_condition_expression(delete.condition_expression().map(str::to_owned))
                    .set_expression_attribute_names(delete.expression_attribute_names().cloned())
                    .set_expression_attribute_values(delete.expression_attribute_values().cloned())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| condition_or(e, user_condition_failed)),
            };
            return sent;
        }
        let user_write = match write {
            UserWrite::Put(put) => TransactWriteItem::builder().put(put).build(),
            UserWrite::Delete(delete) => TransactWriteItem::builder().delete(delete).build(),
        };
        let mut items = vec![user_write];
        if delta != 0 {
            items.push(self.admin_count_change(delta)?);
        }
        let counter = (delta != 0).then_some(1);
        items.extend(claims);
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(ref service))
                if matches!(
                    service.err(),
                    TransactWriteItemsError::TransactionCanceledException(_)
                ) =>
            {
                let TransactWriteItemsError::TransactionCanceledException(cancelled) =
                    service.err()
                else {
                    unreachable!("matched above");
                };
                let reasons = cancelled.cancellation_reasons();
                if reasons
                    .iter()
                    .any(|r| r.code() == Some("TransactionConflict"))
                {
                    // Another transaction touched the same items: the caller
                    // re-reads and retries, as for any lost race.
                    Err(StoreError::Conflict)
                } else if condition_failed_at(reasons, 0) {
                    Err(user_condition_failed)
                } else if counter.is_some_and(|i| condition_failed_at(reasons, i)) {
                    Err(StoreError::LastAdmin)
                } else if (0..reasons.len()).any(|i| condition_failed_at(reasons, i)) {
                    // An e-mail claim: the address is another user's.
                    Err(StoreError::EmailTaken)
                } else {
                    Err(store_error(result.unwrap_err()))
                }
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// The claim item that reserves an e-mail address for one user
    /// (`username` = `#email#<address in lower case>`, `owner` = the user).
    fn claim_key(email: &Email) -> HashMap<String, AttributeValue> {
        Self::user_key(&format!("{CLAIM_PREFIX}{}", email.key()))
    }

    /// Claims `email` for `owner`: fails if another user holds it.
    fn claim(&self, email: &Email, owner: &Username) -> StoreResult<TransactWriteItem> {
        let mut item = Self::claim_key(email);
        item.insert("owner".to_owned(), s(owner.as_str()));
        let put = Put::builder()
            .table_name(&self.tables.users)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(username) OR #owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner.as_str()))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Releases `owner`'s claim on `email` (nothing if it is not theirs).
    fn release(&self, email: &Email, owner: &Username) -> StoreResult<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.tables.users)
            .set_key(Some(Self::claim_key(email)))
            .condition_expression("attribute_not_exists(username) OR #owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner.as_str()))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// The claim changes that go with replacing `current` by `next`.
    fn claims_for(
        &self,
        current: Option<&User>,
        next: Option<&User>,
    ) -> StoreResult<Vec<TransactWriteItem>> {
        let key = |user: Option<&User>| user.and_then(|u| u.email.as_ref()).map(Email::key);
        if key(current) == key(next) {
            return Ok(Vec::new());
        }
        let mut items = Vec::new();
        if let Some(user) = current
            && let Some(email) = &user.email
        {
            items.push(self.release(email, &user.username)?);
        }
        if let Some(user) = next
            && let Some(email) = &user.email
        {
            items.push(self.claim(email, &user.username)?);
        }
        Ok(items)
    }

    /// Claims the address of every user who has one and no claim yet (users
    /// written before addresses were claimed); an address two users share
    /// stays with the first. Returns how many claims it made.
    pub async fn backfill_email_claims(&self) -> StoreResult<usize> {
        let mut made = 0;
        let mut after = None;
        loop {
            let page = self.list_users(after.as_ref(), 100).await?;
            for user in &page.items {
                let Some(email) = &user.email else { continue };
                let mut item = Self::claim_key(email);
                item.insert("owner".to_owned(), s(user.username.as_str()));
                let claimed = self
                    .client
                    .put_item()
                    .table_name(&self.tables.users)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(username)")
                    .send()
                    .await;
                match claimed {
                    Ok(_) => made += 1,
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                    Err(e) => return Err(store_error(e)),
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(made),
            }
        }
    }

    fn unchanged_condition(user: &User) -> [(&'static str, AttributeValue); 2] {
        [
            (":uid", s(user.user_id.to_string())),
            (":lvl", s(user.level.as_str())),
        ]
    }
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        let put = Put::builder()
            .table_name(&self.tables.users)
            .set_item(Some(to_item(user)?))
            .condition_expression("attribute_not_exists(username)")
            .build()
            .map_err(build_error)?;
        let delta = i64::from(user.is_admin());
        let claims = self.claims_for(None, Some(user))?;
        self.write_user(
            UserWrite::Put(put),
            delta,
            claims,
            StoreError::AlreadyExists,
        )
        .await
    }

    async fn get_user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.users)
            .set_key(Some(Self::claim_key(email)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let Some(AttributeValue::S(owner)) = output.item.as_ref().and_then(|i| i.get("owner"))
        else {
            return Ok(None);
        };
        let owner = Username::parse(owner).map_err(|e| corrupt("e-mail claim", e))?;
        // The claim and the user are written together; check anyway.
        Ok(self
            .get_user(&owner)
            .await?
            .filter(|user| user.email.as_ref().map(Email::key) == Some(email.key())))
    }

    async fn get_user(&self, username: &Username) -> StoreResult<Option<User>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.users)
            .set_key(Some(Self::user_key(username.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        output.item.map(from_item).transpose()
    }

    async fn list_users(
        &self,
        after: Option<&Username>,
        limit: usize,
    ) -> StoreResult<Page<User, Username>> {
        let mut items = Vec::with_capacity(limit);
        let mut start = after.map(|u| Self::user_key(u.as_str()));
        let mut more = false;
        while items.len() < limit {
            let output = self
                .client
                .scan()
                .table_name(&self.tables.users)
                .consistent_read(true)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(store_error)?;
            for item in output.items.unwrap_or_default() {
                // The admin counter and e-mail claims share the table.
                let is_user = !matches!(item.get("username"), Some(AttributeValue::S(k)) if k.starts_with('#'));
                if is_user {
                    items.push(from_item(item)?);
                }
            }
            more = output.last_evaluated_key.is_some();
            if !more {
                break;
            }
            start = output.last_evaluated_key;
        }
        // Scan order is the table's own; continuing after the last user we
        // returned visits the rest exactly once.
        let next = if more {
            items.last().map(|u| u.username.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn update_user(&self, current: &User, next: &User) -> StoreResult<()> {
        let values: HashMap<String, AttributeValue> = Self::unchanged_condition(current)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain([(":ver".to_owned(), n(current.version))])
            .collect();
        let put = Put::builder()
            .table_name(&self.tables.users)
            .set_item(Some(to_item(next)?))
            .condition_expression("user_id = :uid AND #lvl = :lvl AND version = :ver")
            .expression_attribute_names("#lvl", "level")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_error)?;
        let delta = i64::from(next.is_admin()) - i64::from(current.is_admin());
        let claims = self.claims_for(Some(current), Some(next))?;
        self.write_user(UserWrite::Put(put), delta, claims, StoreError::Conflict)
            .await
    }

    async fn delete_user(&self, user: &User) -> StoreResult<()> {
        let values: HashMap<String, AttributeValue> = Self::unchanged_condition(user)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let delete = Delete::builder()
            .table_name(&self.tables.users)
            .set_key(Some(Self::user_key(user.username.as_str())))
            .condition_expression("user_id = :uid AND #lvl = :lvl")
            .expression_attribute_names("#lvl", "level")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_error)?;
        let delta = -i64::from(user.is_admin());
        let claims = self.claims_for(Some(user), None)?;
        self.write_user(
            UserWrite::Delete(delete),
            delta,
            claims,
            StoreError::Conflict,
        )
        .await
    }

    async fn count_admins(&self) -> StoreResult<u64> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.users)
            .set_key(Some(Self::user_key(ADMINS_KEY)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        match output
            .item
            .as_ref()
            .and_then(|item| item.get("admin_count"))
        {
            None => Ok(0),
            Some(AttributeValue::N(count)) => {
                count.parse().map_err(|e| corrupt("admin counter", e))
            }
            Some(other) => Err(corrupt("admin counter", format!("{other:?}"))),
        }
    }
}
