//! `SecurityStore` on the Security table.
//!
//! The security log is one partition (`pk` = "audit") sorted by event id
//! (UUID v7, so by time): listing newest first is one Query. One partition
//! takes about 1000 writes a second, far above what API Gateway's throttle
//! lets through (docs/adr/0008). Login-attempt counters are items
//! `pk` = "login#<key>", `sk` = "-", expiring by TTL a week after their last
//! failure (longer than the longest `TASKGATE_LOGIN_FORGET_SECONDS`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use taskgate_domain::ports::{Page, SecurityStore, StoreError, StoreResult};
use taskgate_domain::security::{LoginAttempts, SecurityEvent};
use taskgate_domain::timestamp;

use crate::DynamoStore;
use crate::errors::{build_error, condition_or, corrupt, store_error};

const AUDIT_PARTITION: &str = "audit";
const ATTEMPTS_SORT_KEY: &str = "-";
/// Counter items outlive their last failure by this much before TTL removes them.
const ATTEMPTS_KEPT_SECONDS: i64 = 8 * 24 * 3600;

#[derive(Serialize, Deserialize)]
struct EventItem {
    pk: String,
    sk: String,
    /// The event as JSON text, so it reads back exactly as written.
    event: String,
}

fn key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

fn attempts_key(login_key: &str) -> HashMap<String, AttributeValue> {
    key(format!("login#{login_key}"), ATTEMPTS_SORT_KEY)
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> StoreResult<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt("login attempts", format!("no number {name}")))
}

#[async_trait]
impl SecurityStore for DynamoStore {
    async fn login_attempts(&self, login_key: &str) -> StoreResult<Option<LoginAttempts>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.security)
            .set_key(Some(attempts_key(login_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let last_at = item
            .get("last_at")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt("login attempts", "no last_at"))?;
        Ok(Some(LoginAttempts {
            failures: u32::try_from(number(&item, "failures")?)
                .map_err(|e| corrupt("login attempts", e))?,
            last_at: timestamp::parse(last_at).map_err(|e| corrupt("login attempts", e))?,
        }))
    }

    async fn put_login_attempts(
        &self,
        login_key: &str,
        seen: Option<&LoginAttempts>,
        next: &LoginAttempts,
    ) -> StoreResult<()> {
        let mut item = attempts_key(login_key);
        item.insert(
            "failures".into(),
            AttributeValue::N(next.failures.to_string()),
        );
        item.insert(
            "last_at".into(),
            AttributeValue::S(timestamp::format(next.last_at)),
        );
        item.insert(
            "expires_at".into(),
            AttributeValue::N((next.last_at.unix_timestamp() + ATTEMPTS_KEPT_SECONDS).to_string()),
        );
        let request = self
            .client
            .put_item()
            .table_name(&self.tables.security)
            .set_item(Some(item));
        let request = match seen {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(seen) => request
                .condition_expression("failures = :seen")
                .expression_attribute_values(":seen", AttributeValue::N(seen.failures.to_string())),
        };
        request
            .send()
            .await
            .map_err(|e| condition_or(e, StoreError::Conflict))?;
        Ok(())
    }

    async fn clear_login_attempts(&self, login_key: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.tables.security)
            .set_key(Some(attempts_key(login_key)))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn append_security_event(&self, event: &SecurityEvent) -> StoreResult<()> {
        let item = serde_dynamo::to_item(EventItem {
            pk: AUDIT_PARTITION.to_owned(),
            sk: event.id.clone(),
            event: serde_json::to_string(event).expect("a SecurityEvent always serialises"),
        })
        .map_err(build_error)?;
        self.client
            .put_item()
            .table_name(&self.tables.security)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| condition_or(e, StoreError::AlreadyExists))?;
        Ok(())
    }

    async fn security_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<SecurityEvent, String>> {
        let mut request = self
            .client
            .query()
            .table_name(&self.tables.security)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(AUDIT_PARTITION.into()))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        if let Some(after) = after {
            request = request.set_exclusive_start_key(Some(key(AUDIT_PARTITION.into(), after)));
        }
        let output = request.send().await.map_err(store_error)?;
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let item: EventItem =
                    serde_dynamo::from_item(item).map_err(|e| corrupt("security event", e))?;
                serde_json::from_str(&item.event).map_err(|e| corrupt("security event", e))
            })
            .collect::<StoreResult<Vec<SecurityEvent>>>()?;
        // DynamoDB stops at `limit` and names the last key even when nothing
        // follows; a page shorter than `limit` is the last.
        let next = match output.last_evaluated_key {
            Some(_) if items.len() == limit => items.last().map(|e| e.id.clone()),
            _ => None,
        };
        Ok(Page { items, next })
    }
}
