//! `TokenStore` on the Tokens table, and the session lookup.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, KeysAndAttributes, WriteRequest};
use serde::{Deserialize, Serialize};
use taskgate_domain::ports::{SessionStore, StoreError, StoreResult, TokenStore};
use taskgate_domain::token::{TokenId, TokenRecord};
use taskgate_domain::user::{User, UserId, Username};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::DynamoStore;
use crate::errors::{build_error, condition_or, corrupt, store_error};
use crate::tables::TOKENS_BY_USERNAME;

/// A token record as stored. `expires_at` is epoch seconds because that is
/// what DynamoDB's TTL reads.
#[derive(Serialize, Deserialize)]
struct TokenItem {
    jti: String,
    username: String,
    user_id: String,
    issued_at: String,
    expires_at: i64,
}

fn to_item(token: &TokenRecord) -> StoreResult<HashMap<String, AttributeValue>> {
    serde_dynamo::to_item(TokenItem {
        jti: token.jti.to_string(),
        username: token.username.to_string(),
        user_id: token.user_id.to_string(),
        issued_at: token.issued_at.format(&Rfc3339).map_err(build_error)?,
        expires_at: token.expires_at.unix_timestamp(),
    })
    .map_err(build_error)
}

fn from_item(item: HashMap<String, AttributeValue>) -> StoreResult<TokenRecord> {
    let item: TokenItem = serde_dynamo::from_item(item).map_err(|e| corrupt("token", e))?;
    let bad = |e: &dyn std::fmt::Display| corrupt("token", format!("{}: {e}", item.jti));
    Ok(TokenRecord {
        jti: TokenId::parse(&item.jti).map_err(|e| bad(&e))?,
        username: Username::parse(&item.username).map_err(|e| bad(&e))?,
        user_id: UserId::parse(&item.user_id).map_err(|e| bad(&e))?,
        issued_at: OffsetDateTime::parse(&item.issued_at, &Rfc3339).map_err(|e| bad(&e))?,
        expires_at: OffsetDateTime::from_unix_timestamp(item.expires_at).map_err(|e| bad(&e))?,
    })
}

fn token_key(jti: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("jti".to_owned(), AttributeValue::S(jti.to_owned()))])
}

/// BatchWriteItem takes at most 25 requests.
const BATCH_WRITE_LIMIT: usize = 25;
/// How often to resubmit the part of a batch DynamoDB left unprocessed.
const BATCH_RETRIES: u32 = 8;

impl DynamoStore {
    async fn delete_tokens(&self, jtis: Vec<String>) -> StoreResult<()> {
        for chunk in jtis.chunks(BATCH_WRITE_LIMIT) {
            let mut requests = chunk
                .iter()
                .map(|jti| {
                    DeleteRequest::builder()
                        .set_key(Some(token_key(jti)))
                        .build()
                        .map(|delete| WriteRequest::builder().delete_request(delete).build())
                        .map_err(build_error)
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let mut attempt = 0;
            while !requests.is_empty() {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
                if attempt == BATCH_RETRIES {
                    return Err(StoreError::unavailable(
                        "DynamoDB kept token deletions unprocessed",
                    ));
                }
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.tables.tokens, requests)
                    .send()
                    .await
                    .map_err(store_error)?;
                requests = output
                    .unprocessed_items
                    .and_then(|mut items| items.remove(&self.tables.tokens))
                    .unwrap_or_default();
                attempt += 1;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TokenStore for DynamoStore {
    async fn insert_token(&self, token: &TokenRecord) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.tables.tokens)
            .set_item(Some(to_item(token)?))
            .condition_expression("attribute_not_exists(jti)")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| condition_or(e, StoreError::AlreadyExists))
    }

    async fn get_token(&self, jti: &TokenId) -> StoreResult<Option<TokenRecord>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.tokens)
            .set_key(Some(token_key(&jti.to_string())))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        output.item.map(from_item).transpose()
    }

    async fn delete_token(&self, jti: &TokenId) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.tables.tokens)
            .set_key(Some(token_key(&jti.to_string())))
            .send()
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    async fn delete_user_tokens(
        &self,
        username: &Username,
        keep: Option<&TokenId>,
    ) -> StoreResult<usize> {
        let keep = keep.map(ToString::to_string);
        let mut jtis = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.tables.tokens)
            .index_name(TOKENS_BY_USERNAME)
            .key_condition_expression("username = :u")
            .expression_attribute_values(":u", AttributeValue::S(username.to_string()))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(store_error)?;
            if let Some(AttributeValue::S(jti)) = item.get("jti")
                && Some(jti) != keep.as_ref()
            {
                jtis.push(jti.clone());
            }
        }
        let revoked = jtis.len();
        self.delete_tokens(jtis).await?;
        Ok(revoked)
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn load_session(
        &self,
        jti: &TokenId,
        username: &Username,
    ) -> StoreResult<(Option<TokenRecord>, Option<User>)> {
        let mut request: HashMap<String, KeysAndAttributes> = HashMap::from([
            (
                self.tables.tokens.clone(),
                KeysAndAttributes::builder()
                    .keys(token_key(&jti.to_string()))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error)?,
            ),
            (
                self.tables.users.clone(),
                KeysAndAttributes::builder()
                    .keys(Self::user_key(username.as_str()))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error)?,
            ),
        ]);
        let (mut token, mut user) = (None, None);
        for attempt in 0..=BATCH_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await;
            }
            let output = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(store_error)?;
            let mut responses = output.responses.unwrap_or_default();
            if let Some(item) = responses
                .remove(&self.tables.tokens)
                .and_then(|mut v| v.pop())
            {
                token = Some(from_item(item)?);
            }
            if let Some(item) = responses
                .remove(&self.tables.users)
                .and_then(|mut v| v.pop())
            {
                user = Some(crate::users::from_item(item)?);
            }
            request = output.unprocessed_keys.unwrap_or_default();
            if request.is_empty() {
                return Ok((token, user));
            }
        }
        Err(StoreError::unavailable(
            "DynamoDB kept the session lookup unprocessed",
        ))
    }
}
